"""``twdeploy eval``: mIoU, per-class IoU, pixel accuracy and tag F1 of a model on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twdeploy.model.io import load_model
from twdeploy.model.segmenter import parse_memory
from twdeploy.runtime import detect_backend, open_backend
from twdeploy.runtime.device import resolve_device
from twdeploy.training.data import eval_loader
from twdeploy.training.evaluate import EvalResult, eval_dataset, evaluate, evaluate_backend

console = Console()


def render(result: EvalResult) -> Table:
    """Per-class IoU rows plus the summary."""
    table = Table(title=f"evaluation on {result.images} images")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in zip(result.class_names, result.iou, strict=True):
        table.add_row(name, "-" if iou != iou else f"{iou:.3f}")
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{result.miou:.3f}")
    table.add_row("pixel accuracy", f"{result.pixel_accuracy:.3f}")
    for label, f1 in (("tag F1 (micro)", result.f1), ("tag F1 (macro)", result.f1_macro)):
        table.add_row(label, "-" if f1 != f1 else f"{f1:.3f}")  # nan: the model has no classifier
    return table


def main(
    model: Annotated[
        Path, typer.Argument(help="Run folder (best.pt, else last.pt), checkpoint, .onnx file or TensorRT .engine.")
    ],
    data: Annotated[str, typer.Option(help="synthetic, synthetic:N, voc:PATH or folder:PATH.")] = "synthetic",
    split: Annotated[str, typer.Option(help="Dataset split: val (or test, train).")] = "val",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA (ignored on CPU).")] = True,
    class_chunk: Annotated[int | None, typer.Option(help="Decode this many classes at a time (bounds memory).")] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Run or checkpoint: byte budget for the decoder's class-folded tensors, e.g. 2GB or 512MiB "
            "(default 2GiB; --class-chunk wins); the classes are decoded in chunks that fit, with the same results."
        ),
    ] = None,
    max_images: Annotated[int | None, typer.Option(help="Evaluate on the first N images only.")] = None,
) -> None:
    """Evaluate a trained model.

    \b
    Examples:
      twdeploy eval runs/NAME
      twdeploy eval runs/NAME/checkpoints/last.pt --data synthetic --split test
      twdeploy eval runs/NAME/export/model.onnx       # the exported model, as segment runs it
    """
    budget = None if max_memory is None else parse_memory(max_memory)
    if detect_backend(model) == "torch":
        loaded, card = load_model(model, class_chunk, max_memory=budget)
        dev = resolve_device(device)
        loader = eval_loader(eval_dataset(card, model, data, split, max_images), batch_size)
        result = evaluate(loaded.to(dev), loader, list(card.class_names), dev, amp)
    else:
        backend = open_backend(model, "auto", device, max_memory=budget)
        try:
            result = evaluate_backend(backend, data, split, batch_size, max_images)
        finally:
            backend.close()
    console.print(render(result))
