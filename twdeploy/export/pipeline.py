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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.export import compare
from twdeploy.export.batch import BatchProfile
from twdeploy.export.capability import inspect_capability
from twdeploy.export.inputs import sample_images
from twdeploy.export.lint import format_findings, has_errors, lint_model
from twdeploy.export.onnx import DEFAULT_OPSET, MASK_DTYPES, save_onnx, to_onnx
from twdeploy.export.report import Artifact, ExportReport, lint_dicts
from twdeploy.export.triton import TritonOptions, write_repository
from twdeploy.export.verify import Reference, Verification, measure, verify_against
from twdeploy.model.card import ModelCard, SegmentationModel
from twdeploy.model.folding import for_inference
from twdeploy.model.io import load_model, resolve_checkpoint
from twdeploy.paths import output_dir
from twdeploy.runtime import open_backend
from twdeploy.runtime.torch_backend import TorchBackend

REPORT_NAME = "export_report.json"
logger = logging.getLogger(__name__)
Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """What ``twdeploy export`` was asked for."""

    out: Path | None = None
    topk: int | None = None
    classes: tuple[int | str, ...] | None = None
    """Class ids or names (resolved against the model's card)."""
    batch: BatchProfile = field(default_factory=BatchProfile)
    opset: int = DEFAULT_OPSET
    half: bool = False
    trt: bool = False
    simplify: bool = False
    class_chunk: int | None = None
    max_memory: int | None = None
    workspace_gb: float = 4.0
    samples: int = 4
    device: str = "cpu"
    triton: Path | None = None
    triton_options: TritonOptions = field(default_factory=TritonOptions)
    outputs: tuple[str, ...] = ("heatmaps",)
    """Per-pixel graph outputs: ``heatmaps`` and / or ``mask`` (the argmax as class ids, inside the graph)."""
    mask_dtype: str = "int32"
    """``int32`` or ``uint8`` (up to 256 classes) for the ``mask`` output."""


def run_dir(source: Path) -> Path:
    """The run folder of a run folder or checkpoint (``runs/x/checkpoints/best.pt`` -> ``runs/x``)."""
    checkpoint = resolve_checkpoint(source)
    folder = checkpoint.parent
    return folder.parent if folder.name == "checkpoints" else folder


def prepare_output(out: Path) -> Path:
    """Create ``out`` and prove it is writable, or fail with one line."""
    return output_dir(out, "--out")


def select(
    model: SegmentationModel, card: ModelCard, options: ExportOptions
) -> tuple[SegmentationModel, ModelCard]:
    """The model with the export's class selection and decoder budget, same weights, batch norms folded."""
    if options.topk is not None and options.classes is not None:
        raise TwdeployError("--topk and --classes exclude each other; choose one")
    try:
        if options.topk is not None or options.classes is not None:
            classes = None if options.classes is None else card.class_ids(options.classes)
            card = card.with_selection(classes=classes, topk=options.topk)
        selected = card.build(options.class_chunk, options.max_memory)
    except ValueError as exc:
        raise TwdeployError(f"class selection: {exc}") from None
    try:
        card = card.with_outputs(tuple(options.outputs))
    except ValueError as exc:
        raise TwdeployError(f"--{exc}") from None
    if options.mask_dtype not in MASK_DTYPES or (options.mask_dtype == "uint8" and card.num_classes > 256):
        raise TwdeployError(
            f"--mask-dtype {options.mask_dtype}: choose int32, or uint8 for up to 256 classes "
            f"(this model has {card.num_classes})"
        )
    selected.load_state_dict(model.state_dict())
    return for_inference(selected), card


def _write_onnx(
    model: SegmentationModel, card: ModelCard, path: Path, options: ExportOptions, half: bool, report: ExportReport
) -> Artifact:
    began = time.perf_counter()
    proto = to_onnx(model, card, options.opset, half, options.mask_dtype)
    if options.simplify:
        from twdeploy.export.simplify import simplify

        proto = simplify(proto)
    seconds = time.perf_counter() - began
    findings = lint_model(proto)
    report.lint.extend({"model": path.name, **d} for d in lint_dicts(findings))
    if has_errors(findings):
        raise TwdeployError(
            f"{path.name}: TensorRT lint failed, nothing written: " + format_findings(findings).replace("\n", "; ")
        )
    return Artifact(path, "onnx fp16" if half else "onnx fp32", save_onnx(proto, path), seconds)


def export(
    source: Path,
    options: ExportOptions,
    log: Log | None = None,
    on_report: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """Run the whole export; raises ``TwdeployError`` when any step or check fails.

    ``log`` receives progress lines (default: this module's logger); ``on_report`` sees the
    report once it is complete, also when the export then fails.
    """
    log = log or logger.info
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
        "max_memory": options.max_memory,
        "samples": options.samples,
        "device": options.device,
        "simplify": options.simplify,
        "outputs": card.output_names,
        "mask_dtype": options.mask_dtype if "mask" in card.outputs else None,
    }
    report = ExportReport(str(source), card.to_dict(), settings, inputs)
    log(f"exporting {card.arch} ({card.selection} classes) to {out}/ ...")
    ref = measure(TorchBackend.from_segmenter(model, card, "cpu"), images, batch)
    fp32 = _write_onnx(model, card, out / "model.onnx", options, False, report)
    fp32.verification, ort_ref = _verify_onnx(fp32.path, ref, images, options, compare.FP32)
    report.artifacts.append(fp32)
    if options.half:
        fp16 = _write_onnx(model, card, out / "model.fp16.onnx", options, True, report)
        fp16.verification, _ = _verify_onnx(fp16.path, ref, images, options, compare.FP16)
        report.artifacts.append(fp16)
    rejected = [_capability(art.path, report, log) for art in report.artifacts]
    report.write(out / REPORT_NAME)
    if any(rejected):
        raise TwdeployError(
            f"{'; '.join(line for line in rejected if line)}; details in {out / REPORT_NAME}"
        )
    try:
        if options.trt:
            _engine(report, out, options, card, images, ort_ref, log)
    finally:
        if on_report is not None:
            on_report(report)
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
        log(f"Triton model repository: {folder} (tritonserver --model-repository {options.triton})")
    return report


def _capability(path: Path, report: ExportReport, log: Log) -> str:
    """TensorRT's parser on ``path`` (skipped with the reason where it cannot run); the failure line, if any."""
    verdict = inspect_capability(path)
    report.capability[path.name] = verdict.to_dict()
    log(f"{path.name}: {verdict.summary()}")
    return f"{path.name}: {verdict.summary()}" if verdict.checked and not verdict.supported else ""


def _verify_onnx(
    path: Path, ref: Reference, images: np.ndarray, options: ExportOptions, tol: compare.Tolerance
) -> tuple[Verification, Reference]:
    """Judge ``path`` on the ONNX Runtime backend ``segment`` uses, on ``options.device``."""
    backend = open_backend(path, "onnxruntime", options.device, threads=torch.get_num_threads())
    try:
        return verify_against(backend, ref, images, options.batch.opt, tol)
    finally:
        backend.close()


def _engine(
    report: ExportReport,
    out: Path,
    options: ExportOptions,
    card: ModelCard,
    images: np.ndarray,
    ort_ref: Reference,
    log: Log,
) -> None:
    """Build and verify the TensorRT engine; the ONNX files and report are already written."""
    from twdeploy.export import tensorrt as trt_export

    trt_export.require()
    onnx_path = trt_export.engine_source(out, options.half)
    engine = out / ("model.fp16.engine" if options.half else "model.engine")
    log(f"building TensorRT engine {engine.name} from {onnx_path.name} ...")
    art = trt_export.build_engine(onnx_path, engine, card, options.batch, options.half, options.workspace_gb)
    tol = compare.FP16 if options.half else compare.FP32
    device = "auto" if options.device == "cpu" else options.device
    backend = open_backend(engine, "tensorrt", device)
    try:
        art.verification, _ = verify_against(backend, ort_ref, images, options.batch.opt, tol)
    finally:
        backend.close()
    report.artifacts.append(art)
    report.write(out / REPORT_NAME)
