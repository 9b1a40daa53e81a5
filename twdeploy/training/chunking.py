"""The heatmaps of a training step: only the images the pixel loss reads, in class chunks.

Images without a mask never enter the pixel loss, so only the rows of :func:`loss_rows` are
decoded (the decoder's work and memory scale with the masked images, the gradient is unchanged).
With a class chunk each chunk of classes is decoded under ``torch.utils.checkpoint``: its
intermediate relevance tensors are dropped after the forward and recomputed in the backward, so
only one chunk's decoder activations are alive at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from twdeploy.model.segmenter import Segmenter


def map_saved(saved: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` of every tensor in the saved activations (nested lists and tuples), the rest as it is.

    A tensor saved twice (a residual block's input: its first conv's and its shortcut's) maps to
    one result, so the relevance rules still see one tensor (``rules.add`` keeps shared factors).
    """
    done: dict[int, Tensor] = {}

    def visit(item: Any) -> Any:
        if isinstance(item, Tensor):
            if id(item) not in done:
                done[id(item)] = fn(item)
            return done[id(item)]
        if isinstance(item, list | tuple):
            return type(item)(visit(i) for i in item)
        return item

    return visit(saved)


def detached(saved: Any) -> Any:
    """The saved activations cut from the graph."""
    return map_saved(saved, Tensor.detach)


Rows = slice | Tensor
"""Images of a batch: a slice when they are its first ones (the sampler puts masked images first), else indices."""


def loss_rows(has_mask: Tensor) -> Rows:
    """The images whose heatmaps the pixel loss reads; the first image when none has a mask.

    Decoding one image keeps the pixel loss (then 0) attached to the decoder weights, which
    data-parallel training needs on every rank.
    """
    index = torch.nonzero(has_mask.cpu()).flatten()
    count = int(index.numel())
    if count == 0:
        return slice(0, 1)
    if int(index[-1]) == count - 1:
        return slice(0, count)
    return index.to(has_mask.device)


def select_rows(saved: Any, rows: Rows) -> Any:
    """The saved activations (``(N, ...)`` tensors in nested lists and tuples) of the images ``rows``.

    Anything else stays whole, a train-mode batch norm's ``BatchStatistics`` of the whole batch included.
    """
    return map_saved(saved, lambda t: t[rows])


def decode_chunked(
    model: Segmenter,
    saved: Any,
    r_top: Tensor,
    weights: Mapping[nn.Module, Tensor] | None = None,
    chunk: int | None = None,
) -> Tensor:
    """Heatmaps ``(N, K', H, W)``; with ``chunk`` and gradients on, each chunk is checkpointed."""
    count = int(r_top.shape[1])
    if chunk is None or chunk >= count or not torch.is_grad_enabled():
        return model.decode(saved, r_top, weights)

    def run(r: Tensor) -> Tensor:
        return model.decode(saved, r, weights)

    parts = [checkpoint(run, r_top[:, s : s + chunk], use_reentrant=False) for s in range(0, count, chunk)]
    return torch.cat(parts, dim=1)


def training_heatmaps(
    model: Segmenter,
    logits: Tensor,
    saved: Any,
    weights: Mapping[nn.Module, Tensor] | None = None,
    chunk: int | None = None,
    grad: str = "tied",
    rows: Rows | None = None,
) -> Tensor:
    """The heatmaps of a training step, of the images ``rows`` (all when None).

    ``grad`` ``tied`` cuts the logits and saved activations from the graph, so the pixel loss
    reaches the encoder through the tied decoder weights only (TrainConfig.heatmap_grad).
    """
    if rows is not None:
        logits, saved = logits[rows], select_rows(saved, rows)
    if grad == "tied":
        logits, saved = logits.detach(), detached(saved)
    r_top, _ = model.start_relevance(logits)
    return decode_chunked(model, saved, r_top, weights, chunk)
