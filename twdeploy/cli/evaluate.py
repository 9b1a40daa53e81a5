"""``twdeploy eval``: mIoU, per-class IoU, pixel accuracy and tag F1 of a model on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twdeploy.cli.options import deprecated_option, take_deprecated
from twdeploy.runtime import detect_backend, open_backend
from twdeploy.training.evaluate import EvalResult, evaluate_backend, evaluate_checkpoint

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
    batch: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA (ignored on CPU).")] = True,
    class_chunk: Annotated[int | None, typer.Option(help="Decode this many classes at a time (bounds memory).")] = None,
    max_images: Annotated[int | None, typer.Option(help="Evaluate on the first N images only.")] = None,
    batch_size: deprecated_option("--batch-size", "--batch", int) = None,
) -> None:
    """Evaluate a trained model.

    \b
    Examples:
      twdeploy eval runs/NAME
      twdeploy eval runs/NAME/checkpoints/last.pt --data synthetic --split test
      twdeploy eval runs/NAME/export/model.onnx       # the exported model, as segment runs it
    """
    batch = take_deprecated(batch_size, batch, "--batch-size", "--batch")
    if detect_backend(model) == "torch":
        result = evaluate_checkpoint(model, data, split, batch, device, amp, class_chunk, max_images)
    else:
        backend = open_backend(model, "auto", device)
        try:
            result = evaluate_backend(backend, data, split, batch, max_images)
        finally:
            backend.close()
    console.print(render(result))
