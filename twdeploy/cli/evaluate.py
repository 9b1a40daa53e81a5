"""``twdeploy eval``: mIoU, per-class IoU, pixel accuracy and tag F1 of a model, or of several formats side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twdeploy.cli.options import deprecated_option, take_deprecated
from twdeploy.model.segmenter import parse_memory
from twdeploy.runtime import detect_backend, open_backend
from twdeploy.training.evaluate import (
    EvalResult,
    FormatResult,
    evaluate_backend,
    evaluate_checkpoint,
    evaluate_formats,
)

console = Console(soft_wrap=True)


def _value(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f}"  # nan: a class never seen, or a model without a classifier


def _no_nan(value: Any) -> Any:
    """``value`` with every float nan as None (JSON has no nan)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def render(result: EvalResult) -> Table:
    """Per-class IoU rows plus the summary."""
    table = Table(title=f"evaluation on {result.images} images")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in zip(result.class_names, result.iou, strict=True):
        table.add_row(name, _value(iou))
    table.add_section()
    table.add_row("[bold]mIoU", f"[bold]{result.miou:.3f}")
    table.add_row("pixel accuracy", f"{result.pixel_accuracy:.3f}")
    for label, f1 in (("tag F1 (micro)", result.f1), ("tag F1 (macro)", result.f1_macro)):
        table.add_row(label, _value(f1))
    return table


def _short(model: str) -> str:
    """The last two parts of a model path (``export/model.onnx``); the JSON output has the full one."""
    return "/".join(Path(model).parts[-2:])


def render_formats(rows: list[FormatResult], data: str, split: str) -> Table:
    """One row per format: size, mIoU (and its difference to the first row), pixel accuracy, tag F1."""
    done = [r for r in rows if r.result is not None]
    images = done[0].result.images if done else 0
    table = Table(title=f"twdeploy eval: {data} {split}, {images} images", caption="Δ mIoU: against the first row")
    for column in ("format", "model", "provider", "size MB", "mIoU", "Δ mIoU", "pixel acc", "tag F1"):
        text = column in ("model", "provider")
        justify = "left" if text or column == "format" else "right"
        table.add_column(column, justify=justify, no_wrap=not text, overflow="fold", min_width=10 if text else None)
    first = done[0].result.miou if done else math.nan
    for r in rows:
        size = "-" if r.size_mb is None else f"{r.size_mb:.1f}"
        if r.result is None:
            table.add_row(r.format, escape(_short(r.model)), "-", size, "[red]failed", "-", "-", "-")
            continue
        e = r.result
        table.add_row(
            r.format, escape(_short(r.model)), escape(r.provider), size, f"{e.miou:.4f}", f"{e.miou - first:+.4f}",
            f"{e.pixel_accuracy:.4f}", _value(e.f1),
        )  # fmt: skip
    return table


def main(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="Run folder (best.pt, else last.pt), checkpoint, .onnx file or TensorRT .engine; several: "
            "one row per format."
        ),
    ],
    data: Annotated[str, typer.Option(help="synthetic, synthetic:N, voc:PATH or folder:PATH.")] = "synthetic",
    split: Annotated[str, typer.Option(help="Dataset split: val (or test, train).")] = "val",
    batch: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA (one torch model; ignored on CPU).")] = True,
    class_chunk: Annotated[int | None, typer.Option(help="Decode this many classes at a time (bounds memory).")] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Run or checkpoint: byte budget for the decoder's class-folded tensors, e.g. 2GB or 512MiB "
            "(default 1GiB; --class-chunk wins); the classes are decoded in chunks that fit, with the same results."
        ),
    ] = None,
    max_images: Annotated[int | None, typer.Option(help="Evaluate on the first N images only.")] = None,
    exports: Annotated[
        bool,
        typer.Option("--exports", help="With a run folder, also evaluate its export/ models (ONNX, TensorRT)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    batch_size: deprecated_option("--batch-size", "--batch", int) = None,
) -> None:
    """Evaluate a trained model; several models (or --exports) give one row per format on the same images.

    \b
    Examples:
      twdeploy eval runs/NAME
      twdeploy eval runs/NAME/checkpoints/last.pt --data synthetic --split test
      twdeploy eval runs/NAME/export/model.onnx       # the exported model, as segment runs it
      twdeploy eval runs/NAME --exports               # torch vs ONNX (vs TensorRT): mIoU per format
      twdeploy eval runs/NAME runs/NAME/export/model.fp16.onnx --max-images 100
    """
    batch = take_deprecated(batch_size, batch, "--batch-size", "--batch")
    if len(models) > 1 or exports:
        rows = evaluate_formats(models, data, split, batch, device, max_images, with_exports=exports)
        if as_json:
            payload = {"data": data, "split": split, "formats": [r.to_dict() for r in rows]}
            typer.echo(json.dumps(_no_nan(payload), indent=2))
        else:
            console.print(render_formats(rows, data, split))
            for r in rows:
                if r.result is None:
                    console.print(f"[yellow]failed[/yellow] {escape(r.model)}: {escape(r.error)}", highlight=False)
        return
    model = models[0]
    budget = None if max_memory is None else parse_memory(max_memory)
    if detect_backend(model) == "torch":
        result = evaluate_checkpoint(model, data, split, batch, device, amp, class_chunk, max_images, budget)
    else:
        backend = open_backend(model, "auto", device, max_memory=budget)
        try:
            result = evaluate_backend(backend, data, split, batch, max_images)
        finally:
            backend.close()
    if as_json:
        iou = dict(zip(result.class_names, result.iou, strict=True))
        payload = {"model": str(model), **result.summary(), "iou": iou}
        typer.echo(json.dumps(_no_nan(payload), indent=2))
    else:
        console.print(render(result))
