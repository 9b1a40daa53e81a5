"""Evaluation (method.md section 4): mIoU, per-class IoU, pixel accuracy, classifier multi-label F1."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from twdeploy.data import Normalization, build_dataset
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard, SegmentationModel
from twdeploy.model.io import load_model
from twdeploy.runtime import Backend
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
                    logits, heatmaps = model(batch["image"].to(device))[:2]
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
) -> EvalResult:
    """Evaluate a run folder or checkpoint on a dataset spec at the model's own input size and scaling."""
    model, card = load_model(path, class_chunk)
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
