"""Training losses (method.md section 2): weak image-level tags plus pixel masks for a few images.

Both terms are computed in float32, whatever precision the logits and heatmaps come in.
"""

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

Boundary = Literal["ignore", "background"]


def classification_loss(
    logits: torch.Tensor, tags: torch.Tensor, background_weight: float = 0.0
) -> torch.Tensor:
    """Multi-label soft-margin loss, logits (N, K) vs tags (N, K), class 0 weighted by ``background_weight``.

    With the default weight 0 the background logit learns only through its heatmap. As in
    ``F.multilabel_soft_margin_loss``, the weighted per-class terms are divided by K.
    """
    if logits.ndim != 2 or logits.shape != tags.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tags {tuple(tags.shape)} must both be (N, K)")
    weight = torch.ones(logits.shape[1], dtype=torch.float32, device=logits.device)
    weight[0] = background_weight
    return F.multilabel_soft_margin_loss(logits.float(), tags.float(), weight=weight)


def segmentation_loss(
    heatmaps: torch.Tensor,
    masks: torch.Tensor,
    has_mask: torch.Tensor,
    ignore_index: int = 255,
    boundary: Boundary = "ignore",
    scale: float = 1.0,
    pixel_count: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-entropy of the K class heatmaps (N, K, H, W), times ``scale``, used as logits, against masks (N, H, W).

    Only images with ``has_mask`` (N,) contribute; the loss is the mean over their valid pixels.
    ``boundary="ignore"`` skips ``ignore_index`` pixels, ``"background"`` counts them as class 0
    (the reference's choice). With no valid pixel the loss is 0, still attached to the graph.
    ``scale`` (the reference's ``hm_sf``, 1 there) leaves the argmax, hence the masks, unchanged.
    ``pixel_count`` maps this batch's valid-pixel count to the divisor (data-parallel training: the
    count over all ranks divided by the rank count, so averaged gradients equal one process's).
    """
    if heatmaps.ndim != 4 or masks.shape != (heatmaps.shape[0], *heatmaps.shape[2:]):
        raise ValueError(
            f"heatmaps {tuple(heatmaps.shape)} must be (N, K, H, W), masks (N, H, W): got "
            f"{tuple(masks.shape)}"
        )
    if has_mask.dtype != torch.bool or has_mask.shape != heatmaps.shape[:1]:
        raise ValueError(
            f"has_mask must be a bool tensor of shape (N,), got {has_mask.dtype} {tuple(has_mask.shape)}"
        )
    if boundary not in ("ignore", "background"):
        raise ValueError(f"boundary must be 'ignore' or 'background', got {boundary!r}")
    # Select first: heatmaps of images without masks never enter the loss, so non-finite values there
    # cannot leak into the gradient.
    logits = heatmaps[has_mask].float() * scale
    target = masks[has_mask].long()
    if boundary == "background":
        target = target.masked_fill(target == ignore_index, 0)
    n_valid = (target != ignore_index).sum()
    divisor = n_valid.clamp(min=1) if pixel_count is None else pixel_count(n_valid)
    loss_sum = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return loss_sum / divisor


def total_loss(
    logits: torch.Tensor,
    tags: torch.Tensor,
    heatmaps: torch.Tensor,
    masks: torch.Tensor,
    has_mask: torch.Tensor,
    *,
    w_cls: float = 10.0,
    w_seg: float = 1.0,
    background_weight: float = 0.0,
    ignore_index: int = 255,
    boundary: Boundary = "ignore",
    heatmap_scale: float = 1.0,
    pixel_count: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``w_cls * L_cls + w_seg * L_seg`` and its unweighted parts (detached, for logging).

    ``w_cls`` defaults to 10, the reference's batch size, by which it multiplies the tag loss.
    """
    cls = classification_loss(logits, tags, background_weight)
    seg = segmentation_loss(heatmaps, masks, has_mask, ignore_index, boundary, heatmap_scale, pixel_count)
    return w_cls * cls + w_seg * seg, {"cls": cls.detach(), "seg": seg.detach()}
