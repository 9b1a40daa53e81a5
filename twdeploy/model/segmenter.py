"""The segmenter: a classifier plus its tied-weight LRP decoder; class heatmaps are the logits.

All selected classes go through **one** decoder pass: the class axis is folded into the
batch axis of the relevance tensors (optionally in chunks of ``class_chunk`` classes, which
bounds memory and gives the same result). Without an explicit ``class_chunk`` the chunk is
chosen so the class-folded relevance tensors stay within ``max_memory`` bytes (an estimate:
``LIVE_TENSORS`` tensors the size of the largest saved activation, times the chunk). The
budget is a runtime choice (``--max-memory``), not part of the model card.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from twdeploy.errors import TwdeployError
from twdeploy.model.backbones import ChainNet
from twdeploy.model.lrp import BN_RULES, INPUT_RULES, DecoderContext, check_supported
from twdeploy.model.registry import build_backbone
from twdeploy.model.rules import static_shape


@dataclass(frozen=True)
class ClassSelection:
    """Which classes get a heatmap: all (default), fixed ids, or background + top-k by logit."""

    ids: tuple[int, ...] | None = None
    topk: int | None = None

    def __post_init__(self) -> None:
        if self.ids is not None and self.topk is not None:
            raise ValueError("choose either fixed class ids or top-k, not both")
        if self.topk is not None and self.topk < 1:
            raise ValueError("topk must be at least 1")

    @property
    def mode(self) -> str:
        """``all``, ``ids`` or ``topk``."""
        return "ids" if self.ids is not None else "topk" if self.topk is not None else "all"

    def count(self, num_classes: int) -> int:
        """How many heatmaps one image gets."""
        if self.ids is not None:
            return len(self.ids)
        return min(self.topk + 1, num_classes) if self.topk is not None else num_classes


DEFAULT_MAX_MEMORY = 1024**3
LIVE_TENSORS = 4
MEMORY_UNITS = {
    "b": 1,
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
    **{f"{p}ib": 1024**i for i, p in enumerate("kmgt", 1)},
}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_memory(value: int | str, what: str = "--max-memory") -> int:
    """Bytes from ``2GB`` (powers of 1000: KB, MB, GB, TB), ``512MiB`` (powers of 1024: KiB ... TiB) or a byte count.

    ``what`` names the setting in the one-line error for anything else (``0``, ``2G``, ``lots``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, "b"
    else:
        match = _MEMORY.fullmatch(str(value))
        if match is None or match[2].lower() not in (*MEMORY_UNITS, ""):
            raise TwdeployError(
                f"{what} {value}: not a memory size; give a number with a unit, e.g. 2GB, 1.5GiB or 512MiB "
                "(KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024; no unit: bytes)"
            )
        number, unit = float(match[1]), match[2].lower() or "b"
    size = int(number * MEMORY_UNITS[unit])
    if size < 1:
        raise TwdeployError(f"{what} {value}: must be at least one byte")
    return size


def _largest_activation_bytes(saved: Any) -> int:
    """Bytes of the largest tensor among the saved activations (nested lists and tuples).

    Python ints from the static shape: while tracing, ``numel()`` is a traced value, and a class
    chunk computed from it would make the exported graph's slices depend on the batch size.
    """
    if isinstance(saved, Tensor):
        return math.prod(static_shape(saved, 0)) * saved.element_size()
    if isinstance(saved, list | tuple):
        return max((_largest_activation_bytes(s) for s in saved), default=0)
    return 0


def chunk_for_budget(saved: Any, count: int, max_memory: int) -> int:
    """Classes per decoder chunk so ``LIVE_TENSORS`` folded tensors of the largest activation fit."""
    per_class = LIVE_TENSORS * _largest_activation_bytes(saved)
    return max(1, min(count, max_memory // max(per_class, 1)))


class Segmenter(nn.Module):
    """Encoder (a classifier) + its LRP decoder.

    ``forward(images)`` returns ``(logits, heatmaps)`` with heatmaps ``(N, K', H, W)``; when
    the selection is not ``all`` it returns ``(logits, heatmaps, class_ids)`` where
    ``class_ids (N, K')`` names the class of each heatmap. The decoder takes ``class_chunk``
    classes at a time, or without it as many as fit ``max_memory`` bytes (None: 1 GiB).
    ``input_rule`` is the rule of the conv that reads the image (``lrp.INPUT_RULES``); ``gamma``
    > 0 applies LRP-gamma to every other conv (0: LRP-epsilon, the paper's rule).
    """

    has_classifier = True

    def __init__(
        self,
        arch: str | ChainNet = "resnet50",
        num_classes: int = 21,
        in_channels: int = 3,
        eps: float = 1e-6,
        classes: Sequence[int] | None = None,
        topk: int | None = None,
        class_chunk: int | None = None,
        max_memory: int | None = None,
        bn_rule: str = "separate",
        input_rule: str = "epsilon",
        gamma: float = 0.0,
    ) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma must be zero or positive, got {gamma}")
        if bn_rule not in BN_RULES:
            raise ValueError(f"bn_rule must be one of {BN_RULES}, got {bn_rule!r}")
        if input_rule not in INPUT_RULES:
            raise ValueError(f"input_rule must be one of {INPUT_RULES}, got {input_rule!r}")
        self.bn_rule = bn_rule
        self.input_rule = input_rule
        self.gamma = float(gamma)
        self.encoder = build_backbone(arch, num_classes, in_channels) if isinstance(arch, str) else arch
        check_supported(self.encoder)
        if input_rule != "epsilon" and self.input_layer().in_channels != in_channels:
            raise ValueError(
                f"input_rule {input_rule!r}: the encoder's first Conv2d does not read the {in_channels}-channel image"
            )
        self.arch = arch if isinstance(arch, str) else type(arch).__name__
        self.num_classes = num_classes
        self.eps = eps
        self.selection = ClassSelection(tuple(classes) if classes is not None else None, topk)
        if self.selection.ids is not None and not all(0 <= c < num_classes for c in self.selection.ids):
            raise ValueError(f"class ids must lie in [0, {num_classes})")
        if class_chunk is not None and class_chunk < 1:
            raise ValueError("class_chunk must be at least 1")
        if max_memory is not None and max_memory < 1:
            raise ValueError("max_memory must be at least one byte")
        self.class_chunk = class_chunk
        self.max_memory = DEFAULT_MAX_MEMORY if max_memory is None else max_memory

    @property
    def output_names(self) -> list[str]:
        """Names of ``forward``'s outputs, in order."""
        names = ["logits", "heatmaps"]
        return names if self.selection.mode == "all" else [*names, "class_ids"]

    def encode(self, images: Tensor) -> tuple[Tensor, Any]:
        """Classifier forward: logits and the saved activations the decoder needs."""
        return self.encoder.lrp_forward(images)

    def start_relevance(self, logits: Tensor) -> tuple[Tensor, Tensor | None]:
        """Top-layer relevance ``z_c * e_c`` for each selected class: ``(N, K', K)``, ids."""
        k = self.num_classes
        if self.selection.mode == "all":
            return torch.eye(k, dtype=logits.dtype, device=logits.device) * logits.unsqueeze(1), None
        if self.selection.mode == "ids":
            ids = torch.tensor(self.selection.ids, device=logits.device)
            class_ids = torch.zeros_like(logits[:, : len(self.selection.ids)], dtype=torch.long) + ids
        else:
            top = torch.topk(logits[:, 1:], self.selection.count(k) - 1, dim=1).indices + 1
            class_ids = torch.cat([torch.zeros_like(top[:, :1]), top], dim=1)
        one_hot = (class_ids.unsqueeze(-1) == torch.arange(k, device=logits.device)).to(logits.dtype)
        return one_hot * logits.unsqueeze(1), class_ids

    def input_layer(self) -> nn.Conv2d:
        """The conv that reads the image: the encoder's first ``Conv2d`` (after batch-norm folding too)."""
        conv = next((m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is None:
            raise ValueError(f"{self.arch}: no Conv2d for the input layer's rule")
        return conv

    def decode(self, saved: Any, r_top: Tensor, weights: Mapping[nn.Module, Tensor] | None = None) -> Tensor:
        """Heatmaps ``(N, K', H, W)``: input relevance summed over channels, chunked over K'."""
        first = self.input_layer() if self.input_rule != "epsilon" or self.gamma > 0 else None
        ctx = DecoderContext(self.eps, weights or {}, self.bn_rule, self.input_rule, first, self.gamma)
        count = int(r_top.shape[1])
        chunk = self.class_chunk or chunk_for_budget(saved, count, self.max_memory)
        parts = [
            self.encoder.lrp_relevance(saved, r_top[:, start : start + chunk], ctx).sum(dim=2)
            for start in range(0, count, chunk)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        logits, saved = self.encode(images)
        r_top, class_ids = self.start_relevance(logits)
        heatmaps = self.decode(saved, r_top)
        return (logits, heatmaps) if class_ids is None else (logits, heatmaps, class_ids)

    @torch.no_grad()
    def predict_masks(self, images: Tensor) -> Tensor:
        """Class-id masks ``(N, H, W)``: argmax over the heatmaps, mapped back to class ids."""
        outputs = self.forward(images)
        return masks_from_heatmaps(outputs[1], outputs[2] if len(outputs) == 3 else None)


def masks_from_heatmaps(heatmaps: Tensor, class_ids: Tensor | None = None) -> Tensor:
    """``argmax_c h_c``; with ``class_ids (N, K')`` the index is mapped to the class id."""
    index = heatmaps.argmax(dim=1)
    if class_ids is None:
        return index
    return class_ids.gather(1, index.flatten(1)).view_as(index)
