"""Class-chunked heatmaps for training: bounded memory, exactly the gradient of one pass.

Each chunk of classes is decoded under ``torch.utils.checkpoint``: its intermediate relevance
tensors are dropped after the forward and recomputed in the backward, so only one chunk's
decoder activations are alive at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from twdeploy.model.segmenter import Segmenter


def detached(saved: Any) -> Any:
    """The saved activations (tensors in nested lists and tuples) cut from the graph."""
    if isinstance(saved, Tensor):
        return saved.detach()
    if isinstance(saved, list | tuple):
        return type(saved)(detached(s) for s in saved)
    return saved


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
) -> Tensor:
    """The heatmaps of a training step; ``grad`` ``tied`` cuts the logits and saved activations from the
    graph, so the pixel loss reaches the encoder through the tied decoder weights only (TrainConfig.heatmap_grad).
    """
    if grad == "tied":
        logits, saved = logits.detach(), detached(saved)
    r_top, _ = model.start_relevance(logits)
    return decode_chunked(model, saved, r_top, weights, chunk)
