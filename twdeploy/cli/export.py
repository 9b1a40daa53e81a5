"""``twdeploy export``: write, lint and verify ONNX (and a TensorRT engine), or ``--check`` an ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twdeploy.errors import TwdeployError
from twdeploy.export.batch import parse_batch
from twdeploy.export.capability import inspect_capability
from twdeploy.export.lint import format_findings, has_errors, lint_model
from twdeploy.export.onnx import DEFAULT_OPSET
from twdeploy.export.pipeline import ExportOptions, export
from twdeploy.export.report import table
from twdeploy.export.triton import INSTANCE_KINDS, TritonOptions
from twdeploy.model.segmenter import parse_memory


def _classes(text: str | None) -> tuple[str, ...] | None:
    """``disc,0,5`` -> the names / ids as given; the export resolves them against the model's classes."""
    if text is None:
        return None
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    if not parts:
        raise TwdeployError(f"--classes {text!r}: give class names or ids, e.g. background,disc or 0,1,5")
    return parts


def main(
    source: Annotated[Path | None, typer.Argument(help="Run folder or checkpoint (.pt).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <run>/export).")] = None,
    topk: Annotated[int | None, typer.Option(help="Heatmaps for background + the top-k classes only.")] = None,
    classes: Annotated[
        str | None, typer.Option(help="Heatmaps for these classes only: names or ids, e.g. background,disc or 0,1,5.")
    ] = None,
    batch: Annotated[str, typer.Option(help="Batch size B (profile 1,B,B) or min,opt,max.")] = "1",
    outputs: Annotated[
        str,
        typer.Option(
            help="Per-pixel outputs: heatmaps, mask (argmax class ids inside the graph, no float maps), "
            "or mask,heatmaps."
        ),
    ] = "heatmaps",
    mask_dtype: Annotated[str, typer.Option(help="Element type of the mask output: int32 or uint8.")] = "int32",
    opset: Annotated[int, typer.Option(help="ONNX opset (TensorRT 10's parser takes 9-20).")] = DEFAULT_OPSET,
    half: Annotated[bool, typer.Option("--half", help="Also write a float16 model (divisions stay float32).")] = False,
    trt: Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (NVIDIA GPU).")] = False,
    simplify: Annotated[
        bool, typer.Option("--simplify", help="Simplify the graph with onnxslim (then lint and verify it).")
    ] = False,
    check: Annotated[
        Path | None,
        typer.Option(
            help="Only check this ONNX file: lint against TensorRT's parser table, and the parser itself "
            "(polygraphy inspect capability) where tensorrt and CUDA are present.",
            show_default=False,
        ),
    ] = None,
    class_chunk: Annotated[int | None, typer.Option(help="Decode this many classes at a time (bounds memory).")] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="Byte budget for the decoder's class-folded tensors, e.g. 2GB or 512MiB (default 1GiB; "
            "--class-chunk wins): the torch verification run and the graph's class chunks (sized at the trace "
            "batch of 2) fit it."
        ),
    ] = None,
    workspace: Annotated[float, typer.Option(help="TensorRT workspace limit in GB.")] = 4.0,
    device: Annotated[
        str, typer.Option(help="Where ONNX Runtime verifies: cpu, or auto/cuda/cuda:N (its CUDA/TensorRT providers).")
    ] = "cpu",
    triton: Annotated[
        Path | None, typer.Option(help="Also write a Triton model repository here.", show_default=False)
    ] = None,
    triton_name: Annotated[str | None, typer.Option(help="Triton model name (default: the run's name).")] = None,
    triton_max_batch: Annotated[
        int | None, typer.Option(help="Triton max_batch_size (default: the --batch max with --trt, else 8).")
    ] = None,
    triton_instances: Annotated[int, typer.Option(help="Triton model instances.")] = 1,
    triton_kind: Annotated[str, typer.Option(help=f"Triton instance kind: {', '.join(INSTANCE_KINDS)}.")] = "auto",
    triton_trt: Annotated[
        bool, typer.Option("--triton-trt", help="ONNX model: let Triton's ONNX Runtime use its TensorRT provider.")
    ] = False,
) -> None:
    """Export a trained model to ONNX (and TensorRT), lint it for TensorRT and verify it against torch."""
    console = Console()
    if check is not None:
        findings = lint_model(check)
        console.print(format_findings(findings), highlight=False, soft_wrap=True)
        verdict = inspect_capability(check)
        console.print(verdict.summary(), highlight=False, soft_wrap=True)
        if has_errors(findings) or (verdict.checked and not verdict.supported):
            raise typer.Exit(1)
        return
    if source is None:
        raise TwdeployError("give a run folder or checkpoint to export, or --check MODEL.onnx to lint a file")
    batch_profile = parse_batch(batch)
    serving = TritonOptions(
        name=triton_name,
        max_batch_size=triton_max_batch or (batch_profile.max if trt else max(8, batch_profile.max)),
        instances=triton_instances,
        kind=triton_kind,
        trt_accelerator=triton_trt,
        fp16_accelerator=half,
    )
    options = ExportOptions(
        out=out,
        topk=topk,
        classes=_classes(classes),
        batch=batch_profile,
        opset=opset,
        half=half,
        trt=trt,
        simplify=simplify,
        class_chunk=class_chunk,
        max_memory=None if max_memory is None else parse_memory(max_memory),
        workspace_gb=workspace,
        device=device,
        triton=triton,
        triton_options=serving,
        outputs=tuple(p.strip() for p in outputs.split(",") if p.strip()),
        mask_dtype=mask_dtype,
    )
    report = export(source, options, console.print, lambda done: console.print(table(done)))
    console.print("[green]export verified[/green]; next steps:")
    for art in report.artifacts:
        console.print(f"  twdeploy segment {art.path} <image|folder|video|camera>", highlight=False)
    console.print(f"  twdeploy benchmark {report.artifacts[-1].path}", highlight=False)
