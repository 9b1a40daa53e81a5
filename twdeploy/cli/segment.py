"""``twdeploy segment``: run a model on images, folders, videos, webcams or streams and save the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.inference.display import Viewer
from twdeploy.inference.predictor import SegmentSummary, run_segment
from twdeploy.inference.sinks import SAVE_ITEMS, SegmentWriter, default_save, next_run_dir
from twdeploy.inference.sources import open_source
from twdeploy.model.card import ModelCard
from twdeploy.model.segmenter import parse_memory
from twdeploy.paths import output_dir
from twdeploy.runtime import open_backend
from twdeploy.runtime.device import DEVICE_PATTERN

SKIPPED_FILE = "skipped.jsonl"
SKIPS_SHOWN = 20

EXAMPLES = """Examples:

  twdeploy segment runs/demo photos/                          # torch, masks + overlays

  twdeploy segment runs/demo/export/model.onnx clip.mp4       # ONNX Runtime, annotated video

  twdeploy segment model.engine 0 --show                      # TensorRT on webcam 0

  twdeploy segment triton://localhost:8000/demo photos/       # a model served by Triton (HTTP)

  twdeploy segment model.onnx "data/**/*.jpg" --batch 8 --save mask,heatmaps --classes disc,ring
"""


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``41.3 img/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} {self.unit}/s", style="progress.data.speed")


def parse_save(text: str | None, source_kind: str) -> frozenset[str]:
    """``mask,overlay`` -> the set; None -> the default for the source kind."""
    if text is None:
        return default_save(source_kind)
    items = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = items - SAVE_ITEMS
    if unknown or not items:
        shown = ",".join(sorted(unknown)) or repr(text)
        raise TwdeployError(f"--save {shown}: unknown item: choose from {','.join(sorted(SAVE_ITEMS))}")
    return items


def parse_classes(text: str | None, card: ModelCard) -> frozenset[int] | None:
    """``disc,3`` -> class ids, by name or number; None draws every class."""
    if text is None:
        return None
    try:
        return frozenset(card.class_ids(p for p in text.split(",") if p.strip()))
    except ValueError as exc:
        raise TwdeployError(f"--classes {exc}") from None


def main(
    model: Annotated[
        str,
        typer.Argument(
            help="Run folder, .pt checkpoint, .onnx file, TensorRT .engine, or a model on a Triton server: "
            "triton://HOST[:PORT]/NAME (HTTP, port 8000) or triton+grpc://HOST[:PORT]/NAME (gRPC, port 8001)."
        ),
    ],
    source: Annotated[
        str, typer.Argument(help="Image, folder, glob, video, webcam index (0), rtsp/http URL, or a .txt list.")
    ],
    backend: Annotated[
        str, typer.Option(help="auto (from the model file or URL), torch, onnxruntime, tensorrt or triton.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    half: Annotated[bool, typer.Option("--half", help="float16 autocast (torch backend on CUDA).")] = False,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Torch backend: byte budget for the decoder's class-folded tensors, e.g. 2GB or 512MiB "
            "(default 1GiB); the classes are decoded in chunks that fit, with the same heatmaps."
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Images per inference batch.")] = 1,
    save: Annotated[
        str | None,
        typer.Option(
            help="Comma list of mask,overlay,heatmaps,video,json (default: images mask,overlay,json; "
            "videos video,json)."
        ),
    ] = None,
    classes: Annotated[str | None, typer.Option(help="Only draw these classes (names or ids, comma list).")] = None,
    show: Annotated[bool, typer.Option("--show", help="Show overlays in a window (q / Esc stops).")] = False,
    vid_stride: Annotated[int, typer.Option(min=1, help="Use every n-th video frame.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/segment/<n>/).")] = None,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Overlay opacity.")] = 0.5,
) -> None:
    """Segment SOURCE with MODEL: masks (palette PNGs), overlays, heatmaps, annotated videos, results.jsonl."""
    console = Console(soft_wrap=True)
    check_device(device)
    budget = None if max_memory is None else parse_memory(max_memory)
    out_dir = output_dir(out) if out is not None else next_run_dir()
    src = open_source(source, vid_stride)
    runner = open_backend(model, backend, device, half, max_memory=budget)
    try:
        card = runner.card
        wanted = parse_save(save, src.kind)
        if "heatmaps" in wanted and "heatmaps" not in card.outputs:
            raise TwdeployError(
                f"{model}: --save heatmaps needs a heatmaps output; this model was exported with "
                f"--outputs {','.join(card.outputs)} (re-export with --outputs mask,heatmaps)"
            )
        drawn = parse_classes(classes, card)
        console.print(
            f"[bold]{model}[/bold]: {card.arch}, {card.num_classes} classes, input {card.image_size[0]}x"
            f"{card.image_size[1]}, backend {runner.name} on {runner.provider}",
            highlight=False,
        )
        viewer = Viewer(enabled=show)
        if show and not viewer.active:
            console.print(f"[yellow]--show ignored:[/yellow] {viewer.reason}", highlight=False)
        unit = "frames" if src.kind in ("video", "stream") else "img"
        with (
            SegmentWriter(out_dir, card.class_names, wanted, drawn, alpha) as writer,
            viewer,
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(unit),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task("segment", total=src.frame_count)
            summary = run_segment(runner, src, writer, batch, src.is_live, viewer, lambda n: progress.advance(task, n))
            done = progress.tasks[task].completed
            progress.update(task, total=done, completed=done)
    finally:
        src.close()
        runner.close()
    report(console, summary, wanted, unit)
    if summary.interrupted is not None:
        raise summary.interrupted
    if not summary.written:
        listed = f"; the reasons are in {summary.out_dir / SKIPPED_FILE}" if summary.skipped else ""
        raise TwdeployError(f"{source}: nothing was segmented ({len(summary.skipped)} inputs skipped{listed})")


def check_device(device: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; anything else is a one-line error for every backend."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise TwdeployError(f"--device {device}: unknown device; use auto, cpu, cuda or cuda:N")
    return device


def report(console: Console, summary: SegmentSummary, saved: frozenset[str], unit: str) -> None:
    """Speed line, end-to-end FPS, written / skipped with paths and reasons (all in skipped.jsonl), results."""
    console.print(summary.speed_line(), highlight=False)
    ended = ", stopped by the user" if summary.stopped else ""
    if summary.interrupted is not None:
        ended = ", interrupted: every file written so far is complete"
    console.print(
        f"End-to-end: {summary.fps:.1f} {unit}/s ({summary.written} in {summary.elapsed_s:.2f} s{ended})",
        highlight=False,
    )
    console.print(f"Written: {summary.written}, skipped: {len(summary.skipped)}", highlight=False)
    for item in summary.skipped[:SKIPS_SHOWN]:
        console.print(
            f"  [yellow]skipped[/yellow] {escape(item.source or item.name)}: {escape(item.reason)}", highlight=False
        )
    if len(summary.skipped) > SKIPS_SHOWN:
        console.print(f"  (+{len(summary.skipped) - SKIPS_SHOWN} more in {SKIPPED_FILE})", highlight=False)
    if summary.skipped:
        lines = (json.dumps({"source": s.source, "name": s.name, "reason": s.reason}) for s in summary.skipped)
        atomic.write_text(summary.out_dir / SKIPPED_FILE, "".join(line + "\n" for line in lines))
    folders = {"mask": "masks/", "overlay": "overlays/", "heatmaps": "heatmaps/", "video": "videos/"}
    made = [f for item, f in folders.items() if item in saved and (summary.out_dir / f).is_dir()]
    if "json" in saved:
        made.append("results.jsonl")
    console.print(f"Results saved to [bold]{summary.out_dir}[/bold] ({', '.join(made) or 'nothing saved'})")
