"""``twdeploy export``: checkpoint -> ONNX (lint, verify) -> optional TensorRT engine, with a report.

Export folder (default ``<run>/export/``)::

    model.onnx            float32 graph, model card in metadata_props
    model.fp16.onnx       --half: float16 inside, float32 interface and divisions
    model.engine          --trt (model.fp16.engine with --half)
    model.engine.json     the engine's model card (sidecar; same stem as the engine)
    model.timing.cache    TensorRT timing cache, reused by later builds
    export_report.json    settings, lint findings, per-artefact checks and timings

With ``triton`` set, the served artefact (the engine with --trt, else the fp16 ONNX with
--half, else model.onnx) is also written into a Triton model repository (export/triton.py).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from twdeploy.errors import TwdeployError
from twdeploy.export import compare
from twdeploy.export.batch import BatchProfile
from twdeploy.export.inputs import sample_images
from twdeploy.export.lint import format_findings, has_errors, lint_model
from twdeploy.export.onnx import DEFAULT_OPSET, save_onnx, to_onnx
from twdeploy.export.report import Artifact, ExportReport, lint_dicts, table
from twdeploy.export.triton import TritonOptions, write_repository
from twdeploy.export.verify import Reference, ort_runner, reference, torch_runner, verify_against
from twdeploy.model.card import ModelCard
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.io import load_model, resolve_checkpoint
from twdeploy.model.segmenter import Segmenter

REPORT_NAME = "export_report.json"


@dataclass(frozen=True)
class ExportOptions:
    """What ``twdeploy export`` was asked for."""

    out: Path | None = None
    topk: int | None = None
    classes: tuple[int, ...] | None = None
    batch: BatchProfile = field(default_factory=BatchProfile)
    opset: int = DEFAULT_OPSET
    half: bool = False
    trt: bool = False
    class_chunk: int | None = None
    workspace_gb: float = 4.0
    samples: int = 4
    triton: Path | None = None
    triton_options: TritonOptions = field(default_factory=TritonOptions)


def run_dir(source: Path) -> Path:
    """The run folder of a run folder or checkpoint (``runs/x/checkpoints/best.pt`` -> ``runs/x``)."""
    checkpoint = resolve_checkpoint(source)
    folder = checkpoint.parent
    return folder.parent if folder.name == "checkpoints" else folder


def prepare_output(out: Path) -> Path:
    """Create ``out`` and prove it is writable, or fail with one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TwdeployError(
            f"{out}: cannot write the export there ({reason}); pass --out with a writable folder"
        ) from None
    return out


def select(model: Segmenter, card: ModelCard, options: ExportOptions) -> tuple[Segmenter, ModelCard]:
    """The model with the export's class selection (and class chunk), same weights, batch norms folded."""
    if options.topk is not None and options.classes is not None:
        raise TwdeployError("--topk and --classes exclude each other; choose one")
    if options.topk is not None or options.classes is not None:
        card = card.with_selection(classes=options.classes, topk=options.topk)
    try:
        selected = card.build(options.class_chunk)
    except ValueError as exc:
        raise TwdeployError(f"class selection: {exc}") from None
    selected.load_state_dict(model.state_dict())
    return fold_batchnorm(selected), card


def _write_onnx(
    model: Segmenter, card: ModelCard, path: Path, options: ExportOptions, half: bool, report: ExportReport
) -> Artifact:
    began = time.perf_counter()
    proto = to_onnx(model, card, options.opset, half)
    seconds = time.perf_counter() - began
    findings = lint_model(proto)
    report.lint.extend({"model": path.name, **d} for d in lint_dicts(findings))
    if has_errors(findings):
        raise TwdeployError(
            f"{path.name}: TensorRT lint failed, nothing written: " + format_findings(findings).replace("\n", "; ")
        )
    return Artifact(path, "onnx fp16" if half else "onnx fp32", save_onnx(proto, path), seconds)


def export(source: Path, options: ExportOptions, console: Console) -> ExportReport:
    """Run the whole export; raises ``TwdeployError`` when any step or check fails."""
    if options.trt and options.triton is not None and options.triton_options.max_batch_size > options.batch.max:
        raise TwdeployError(
            f"Triton max batch {options.triton_options.max_batch_size} exceeds the engine's profile maximum "
            f"{options.batch.max}; raise --batch (min,opt,max) or lower --triton-max-batch"
        )
    model, card = load_model(source, fold_bn=False)
    model, card = select(model, card, options)
    out = prepare_output(options.out or run_dir(source) / "export")
    batch = options.batch.opt
    count = -(-options.samples // batch) * batch  # whole batches of opt: every run lies in the profile
    images, inputs = sample_images(card, count, run_dir(source))
    settings = {
        "opset": options.opset,
        "half": options.half,
        "batch": vars(options.batch),
        "class_chunk": options.class_chunk,
        "samples": options.samples,
    }
    report = ExportReport(str(source), card.to_dict(), settings, inputs)
    console.print(f"exporting {card.arch} ({card.selection} classes) to {out}/ ...")
    ref = reference("torch", torch_runner(model), images, batch)
    fp32 = _write_onnx(model, card, out / "model.onnx", options, False, report)
    fp32.verification, ort_out = verify_against("onnxruntime", ort_runner(fp32.path), ref, images, batch, compare.FP32)
    report.artifacts.append(fp32)
    if options.half:
        fp16 = _write_onnx(model, card, out / "model.fp16.onnx", options, True, report)
        fp16.verification, _ = verify_against("onnxruntime", ort_runner(fp16.path), ref, images, batch, compare.FP16)
        report.artifacts.append(fp16)
    report.write(out / REPORT_NAME)
    if options.trt:
        ort_ref = Reference("onnxruntime", ort_out, fp32.verification.ms_per_image["onnxruntime"])
        _engine(report, out, options, card, images, ort_ref, console)
    console.print(table(report))
    if not report.passed:
        failed = [
            f"{a.path.name}: {c.name}"
            for a in report.artifacts
            if a.verification
            for c in a.verification.checks
            if not c.passed
        ]
        raise TwdeployError(f"verification failed ({', '.join(failed)}); details in {out / REPORT_NAME}")
    if options.triton is not None:
        served = report.artifacts[-1].path
        source_onnx = out / ("model.fp16.onnx" if options.half else "model.onnx")
        folder = write_repository(options.triton, served, options.triton_options, source_onnx, run_dir(source).name)
        console.print(f"Triton model repository: {folder} (tritonserver --model-repository {options.triton})")
    return report


def _engine(
    report: ExportReport,
    out: Path,
    options: ExportOptions,
    card: ModelCard,
    images: np.ndarray,
    ort_ref: Reference,
    console: Console,
) -> None:
    """Build and verify the TensorRT engine; the ONNX files and report are already written."""
    from twdeploy.export import tensorrt as trt_export

    try:
        trt_export.require()
    except TwdeployError:
        console.print(table(report))
        raise
    onnx_path = trt_export.engine_source(out, options.half)
    engine = out / ("model.fp16.engine" if options.half else "model.engine")
    console.print(f"building TensorRT engine {engine.name} from {onnx_path.name} ...")
    art = trt_export.build_engine(onnx_path, engine, card, options.batch, options.half, options.workspace_gb)
    tol = compare.FP16 if options.half else compare.FP32
    runner = trt_export.engine_runner(engine)
    art.verification, _ = verify_against("tensorrt", runner, ort_ref, images, options.batch.opt, tol)
    report.artifacts.append(art)
    report.write(out / REPORT_NAME)
