"""``twdeploy benchmark``: every available backend for a model x batch sizes, as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twdeploy.errors import TwdeployError
from twdeploy.inference.benchmark import BenchResult, run_benchmark, thread_settings

EXAMPLES = """Examples:

  twdeploy benchmark runs/demo                                # torch + export/model.onnx when present

  twdeploy benchmark runs/demo/export/model.onnx --batches 1,8 --threads 4

  twdeploy benchmark runs/demo --backends torch,onnxruntime --json > bench.json
"""


def parse_ints(text: str, flag: str) -> list[int]:
    """``1,4,8`` -> [1, 4, 8]."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise TwdeployError(f"{flag} {text!r}: give comma-separated integers, e.g. 1,4,8") from None
    if not values or min(values) < 1:
        raise TwdeployError(f"{flag} {text!r}: batch sizes must be 1 or more")
    return values


def table(results: list[BenchResult]) -> Table:
    """The results as a rich table."""
    kinds = sorted({r.memory for r in results})
    out = Table(title="twdeploy benchmark", caption=f"peak MiB: {' / '.join(kinds)}; median of the timed runs")
    for column in ("backend", "provider", "batch", "ms/img", "img/s", "peak MiB", "vs torch"):
        out.add_column(column, justify="left" if column in ("backend", "provider") else "right")
    for r in results:
        out.add_row(
            r.backend,
            r.provider,
            str(r.batch),
            f"{r.ms_per_image:.2f}",
            f"{r.images_per_s:.1f}",
            "-" if r.peak_mib is None else f"{r.peak_mib:.0f}",
            "-" if r.speedup_vs_torch is None else f"{r.speedup_vs_torch:.2f}x",
        )
    return out


def main(
    model: Annotated[str, typer.Argument(help="Run folder, .pt checkpoint, .onnx file or TensorRT .engine.")],
    batches: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = "1,4",
    backends: Annotated[
        str | None, typer.Option(help="Comma list of torch,onnxruntime,tensorrt (default: all).")
    ] = None,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per batch size.")] = 3,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per batch size (median reported).")] = 10,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch and ONNX Runtime.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Time MODEL on every available backend x batch size: ms/img, img/s, peak memory, speed-up vs torch."""
    names = [p.strip() for p in backends.split(",") if p.strip()] if backends else None
    results, skipped = run_benchmark(model, parse_ints(batches, "--batches"), names, warmup, runs, device, threads)
    settings = thread_settings(threads)
    if as_json:
        payload = {"model": model, "threads": settings, "results": [r.to_dict() for r in results], "skipped": skipped}
        typer.echo(json.dumps(payload, indent=2))
        return
    console = Console(soft_wrap=True)
    console.print("Threads: " + ", ".join(f"{k}={v}" for k, v in settings.items()), highlight=False)
    console.print(table(results))
    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {line}", highlight=False)
