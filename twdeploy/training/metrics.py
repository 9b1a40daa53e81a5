"""Set-level metrics (method.md section 4): segmentation confusion matrix and multi-label F1.

Both accumulate counts over a whole evaluation set, so per-batch numbers are never averaged.
Inputs may be torch tensors (counted on their own device) or numpy arrays.
"""

from typing import Literal

import numpy as np
import torch

Array = torch.Tensor | np.ndarray
Average = Literal["micro", "macro"]


def _nan_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with nan where den is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def _nanmean(values: np.ndarray) -> float:
    """Mean over the defined (non-nan) entries; nan when none is defined."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


class ConfusionMatrix:
    """Pixel confusion matrix over a set: ``matrix[target, pred]``; ``ignore_index`` pixels are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: Array, target: Array) -> None:
        """Add a batch of predicted and true class maps (same shape, e.g. (N, H, W), integer)."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        for name, a in (("pred", pred), ("target", target)):
            if a.dtype == torch.bool or a.is_floating_point() or a.is_complex():
                raise TypeError(f"{name} must hold integer class ids (argmax of the heatmaps), got {a.dtype}")
        target = target.to(pred.device)
        valid = target != self.ignore_index
        p, t = pred[valid].long(), target[valid].long()
        k = self.num_classes
        if p.numel():
            lo, hi = torch.aminmax(torch.cat([p, t]))
            if lo < 0 or hi >= k:
                raise ValueError(
                    f"class ids span [{int(lo)}, {int(hi)}], outside [0, {k}); only target pixels equal to "
                    f"the ignore label {self.ignore_index} are skipped"
                )
        self.matrix += torch.bincount(t * k + p, minlength=k * k).cpu().numpy().reshape(k, k)

    def iou(self) -> np.ndarray:
        """Per-class IoU over the set; nan for a class absent from both predictions and targets."""
        inter = np.diag(self.matrix)
        union = self.matrix.sum(0) + self.matrix.sum(1) - inter
        return _nan_ratio(inter, union)

    def miou(self) -> float:
        """Mean IoU over the classes with a defined IoU (background included)."""
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        """Share of non-ignored pixels whose predicted class is right; nan before any pixel."""
        return float(_nan_ratio(np.trace(self.matrix), self.matrix.sum()))

    def summary(self) -> dict[str, float]:
        """mIoU and pixel accuracy, for a metrics log."""
        return {"miou": self.miou(), "pixel_accuracy": self.pixel_accuracy()}

    def merge(self, other: "ConfusionMatrix") -> None:
        """Add another matrix's counts (e.g. from another worker)."""
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError("cannot merge confusion matrices with different classes or ignore label")
        self.matrix += other.matrix

    def reset(self) -> None:
        """Forget all counts."""
        self.matrix[:] = 0


class MultiLabelF1:
    """Multi-label precision/recall/F1 over a set, from classifier logits and image-level tags.

    A class is predicted when its logit exceeds ``threshold`` (0 on logits = 0.5 probability).
    Per-class values that are 0/0 are nan and left out of macro averages, as in ``miou``.
    """

    def __init__(self, num_classes: int, threshold: float = 0.0, exclude_background: bool = True) -> None:
        self.num_classes = num_classes
        self.threshold = threshold
        self.exclude_background = exclude_background
        self.tp = np.zeros(num_classes, np.int64)
        self.fp = np.zeros(num_classes, np.int64)
        self.fn = np.zeros(num_classes, np.int64)

    def update(self, logits: Array, tags: Array) -> None:
        """Add a batch: logits (N, K) and tags (N, K) (1 = present, 0 = absent)."""
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu().numpy()
        if isinstance(tags, torch.Tensor):
            tags = tags.detach().float().cpu().numpy()
        logits, tags = np.asarray(logits), np.asarray(tags)
        if logits.ndim != 2 or logits.shape != tags.shape or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits {logits.shape} and tags {tags.shape} must both be (N, {self.num_classes})"
            )
        pred, true = logits > self.threshold, tags > 0.5
        self.tp += (pred & true).sum(0)
        self.fp += (pred & ~true).sum(0)
        self.fn += (~pred & true).sum(0)

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start = 1 if self.exclude_background else 0
        return self.tp[start:], self.fp[start:], self.fn[start:]

    def precision(self, average: Average = "micro") -> float:
        """tp / (tp + fp), pooled over classes (micro) or averaged per class (macro)."""
        tp, fp, _ = self._counts()
        return self._average(tp, tp + fp, average)

    def recall(self, average: Average = "micro") -> float:
        """tp / (tp + fn), pooled over classes (micro) or averaged per class (macro)."""
        tp, _, fn = self._counts()
        return self._average(tp, tp + fn, average)

    def f1(self, average: Average = "micro") -> float:
        """2 tp / (2 tp + fp + fn), pooled over classes (micro) or averaged per class (macro)."""
        tp, fp, fn = self._counts()
        return self._average(2 * tp, 2 * tp + fp + fn, average)

    def per_class_f1(self) -> np.ndarray:
        """F1 of each counted class (background dropped when excluded); nan where 0/0."""
        tp, fp, fn = self._counts()
        return _nan_ratio(2 * tp, 2 * tp + fp + fn)

    @staticmethod
    def _average(num: np.ndarray, den: np.ndarray, average: Average) -> float:
        if average == "micro":
            return float(_nan_ratio(num.sum(), den.sum()))
        if average == "macro":
            return _nanmean(_nan_ratio(num, den))
        raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")

    def summary(self) -> dict[str, float]:
        """Micro and macro precision, recall and F1, for a metrics log."""
        return {
            f"{avg}_{name}": getattr(self, name)(avg)
            for avg in ("micro", "macro")
            for name in ("f1", "precision", "recall")
        }

    def merge(self, other: "MultiLabelF1") -> None:
        """Add another accumulator's counts (e.g. from another worker)."""
        if (other.num_classes, other.exclude_background) != (self.num_classes, self.exclude_background):
            raise ValueError("cannot merge F1 accumulators with different classes or background handling")
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def reset(self) -> None:
        """Forget all counts."""
        for counts in (self.tp, self.fp, self.fn):
            counts[:] = 0
