"""Evaluation (method.md section 4): mIoU, per-class IoU, pixel accuracy, classifier multi-label F1."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from twdeploy.data import Normalization, build_dataset
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard, SegmentationModel
from twdeploy.model.card_files import read_engine_info, read_metadata
from twdeploy.model.io import load_model, resolve_checkpoint
from twdeploy.runtime import Backend, detect_backend, open_backend
from twdeploy.runtime.base import run_exports
from twdeploy.runtime.layout import preferred_layout
from twdeploy.training.data import eval_loader
from twdeploy.training.device import autocast, resolve_device
from twdeploy.training.metrics import ConfusionMatrix, MultiLabelF1


@dataclass
class EvalResult:
    """Set-level metrics of one evaluation."""

    class_names: list[str]
    iou: list[float]
    miou: float
    pixel_accuracy: float
    f1: float
    f1_macro: float
    images: int

    def summary(self) -> dict[str, float]:
        """The scalar metrics, for a metrics log."""
        return {k: v for k, v in asdict(self).items() if k not in ("class_names", "iou")}


@torch.no_grad()
def evaluate(
    model: SegmentationModel,
    loader: DataLoader,
    class_names: list[str],
    device: torch.device,
    amp: bool,
    sum_counts: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EvalResult:
    """Run ``model`` (all class heatmaps or score maps) over ``loader``; the model is left in the mode it came in.

    Images run in :func:`~twdeploy.runtime.layout.preferred_layout`, as the torch backend runs them.
    Tag F1 is nan for a model without a classification head (the plain U-Net). ``sum_counts``
    sums the pixel and tag counts over the ranks that each evaluated a share of the set.
    """
    was_training = model.training
    model.eval()
    k = len(class_names)
    confusion, f1 = ConfusionMatrix(k), MultiLabelF1(k)
    images = 0
    try:
        with torch.random.fork_rng(devices=[]):  # item loading draws from torch's RNG: keep training's intact
            for batch in loader:
                with autocast(device, amp):
                    logits, heatmaps = model(preferred_layout(batch["image"].to(device)))[:2]
                has_mask = batch["has_mask"].to(device)
                confusion.update(heatmaps.argmax(dim=1)[has_mask], batch["mask"].to(device)[has_mask])
                if model.has_classifier:
                    f1.update(logits, batch["tags"])
                images += len(batch["image"])
    finally:
        model.train(was_training)
    if sum_counts is not None:
        confusion.matrix = sum_counts(confusion.matrix)
        f1.tp, f1.fp, f1.fn = (sum_counts(c) for c in (f1.tp, f1.fp, f1.fn))
        images = int(sum_counts(np.array([images]))[0])
    return EvalResult(
        class_names=list(class_names),
        iou=[float(v) for v in confusion.iou()],
        miou=confusion.miou(),
        pixel_accuracy=confusion.pixel_accuracy(),
        f1=f1.f1("micro") if model.has_classifier else math.nan,
        f1_macro=f1.f1("macro") if model.has_classifier else math.nan,
        images=images,
    )


def eval_dataset(card: ModelCard, model: str | Path, data: str, split: str, max_images: int | None) -> Dataset:
    """``data``'s ``split`` at the model's own input size and scaling; one-line errors when it does not fit."""
    norm = Normalization.from_dict(card.normalization)
    dataset = build_dataset(data, split, int(card.image_size[0]), train=False, norm=norm)
    if dataset.num_classes != card.num_classes:
        raise TwdeployError(
            f"{model}: model has {card.num_classes} classes but {data} has {dataset.num_classes}; "
            "evaluate on the data the model was trained for"
        )
    if len(dataset) == 0:
        raise TwdeployError(f"{data}: split {split!r} is empty; choose another --split")
    if max_images is not None and max_images < len(dataset):
        return Subset(dataset, range(max_images))
    return dataset


def evaluate_checkpoint(
    path: str | Path,
    data: str,
    split: str = "val",
    batch_size: int = 16,
    device: str = "auto",
    amp: bool = True,
    class_chunk: int | None = None,
    max_images: int | None = None,
    max_memory: int | None = None,
) -> EvalResult:
    """Evaluate a run folder or checkpoint on a dataset spec at the model's own input size and scaling.

    ``max_memory`` (bytes) bounds the decoder's class-folded tensors (default: the Segmenter's).
    """
    model, card = load_model(path, class_chunk, max_memory=max_memory)
    dataset = eval_dataset(card, path, data, split, max_images)
    dev = resolve_device(device)
    return evaluate(model.to(dev), eval_loader(dataset, batch_size), list(card.class_names), dev, amp)


def evaluate_backend(
    backend: Backend, data: str, split: str = "val", batch_size: int = 16, max_images: int | None = None
) -> EvalResult:
    """Evaluate any runtime backend (torch, ONNX Runtime, TensorRT) exactly as ``segment`` runs it."""
    card = backend.card
    dataset = eval_dataset(card, backend.name, data, split, max_images)
    k = card.num_classes
    confusion, f1 = ConfusionMatrix(k), MultiLabelF1(k)
    images = 0
    with torch.random.fork_rng(devices=[]):
        for batch in eval_loader(dataset, batch_size):
            out = backend.infer(batch["image"].numpy())
            masks = torch.from_numpy(out.masks())
            has_mask = batch["has_mask"]
            confusion.update(masks[has_mask], batch["mask"][has_mask])
            f1.update(torch.from_numpy(out.logits), batch["tags"])
            images += len(batch["image"])
    return EvalResult(
        class_names=list(card.class_names),
        iou=[float(v) for v in confusion.iou()],
        miou=confusion.miou(),
        pixel_accuracy=confusion.pixel_accuracy(),
        f1=f1.f1("micro"),
        f1_macro=f1.f1("macro"),
        images=images,
    )


@dataclass
class FormatResult:
    """One model file (one format) evaluated on the shared validation set; ``error`` when it could not run."""

    format: str
    model: str
    provider: str
    size_mb: float | None
    result: EvalResult | None
    seconds: float
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dict (the evaluation's scalar metrics flattened in)."""
        out: dict[str, object] = {k: v for k, v in asdict(self).items() if k != "result"}
        if self.result is not None:
            return out | self.result.summary()
        return out | {f.name: None for f in fields(EvalResult) if f.name not in ("class_names", "iou")}


def format_name(model: str | Path) -> str:
    """``torch``, ``onnx fp32|fp16`` or ``tensorrt fp32|fp16``, from the file and its own metadata."""
    kind = detect_backend(model)
    if kind == "torch":
        return "torch"
    try:
        if kind == "onnxruntime":
            return f"onnx {read_metadata(model).get('twdeploy.precision', 'fp32')}"
        return f"tensorrt {read_engine_info(Path(model)).get('precision', 'fp32')}"
    except TwdeployError:
        return "onnx" if kind == "onnxruntime" else "tensorrt"


def _size_mb(model: Path) -> float | None:
    try:
        path = resolve_checkpoint(model) if detect_backend(model) == "torch" else model
        return path.stat().st_size / 2**20
    except (OSError, TwdeployError):
        return None


def evaluate_formats(
    models: Sequence[str | Path],
    data: str,
    split: str = "val",
    batch_size: int = 16,
    device: str = "auto",
    max_images: int | None = None,
    with_exports: bool = False,
) -> list[FormatResult]:
    """Evaluate every model (``with_exports``: a run folder's exports too) on the same set, as ``segment`` runs it.

    Each model runs on its own runtime backend (torch, ONNX Runtime, TensorRT), so the rows
    compare formats on one code path; a model that cannot be opened or run gets its error
    instead of metrics. Raises when none could be evaluated.
    """
    paths: list[Path] = []
    for model in models:
        for path in [Path(model), *(run_exports(model) if with_exports else [])]:
            if path not in paths:
                paths.append(path)
    rows = []
    for path in paths:
        began = time.perf_counter()
        provider, result, error = "", None, ""
        try:
            backend = open_backend(path, "auto", device)
            provider = backend.provider
            try:
                result = evaluate_backend(backend, data, split, batch_size, max_images)
            finally:
                backend.close()
        except TwdeployError as exc:
            error = str(exc)
        name = format_name(path) if path.exists() else "?"
        rows.append(FormatResult(name, str(path), provider, _size_mb(path), result, time.perf_counter() - began, error))
    if all(row.result is None for row in rows):
        raise TwdeployError("no model could be evaluated: " + "; ".join(row.error for row in rows))
    return rows
