"""The max-pool relevance rule as first written (one-hot grouped ConvTranspose scatter): the oracle
the current ``rules.maxpool2d`` is tested and benchmarked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from twdeploy.model.rules import Relevance, Scaled, cast, static_shape, unfold


def onehot_maxpool2d(
    a: Tensor,
    y: Tensor,
    r: Relevance,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor:
    """Winner-take-all via a 9C-channel stack and a grouped ConvTranspose with a one-hot kernel."""
    channels, height, width = static_shape(a)
    c, shared = (r.c, r.a) if isinstance(r, Scaled) else (r, None)
    classes = int(c.shape[1])
    h_out, w_out = static_shape(y, 2)
    padded = F.pad(a, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
    taken = torch.zeros_like(y, dtype=torch.bool)
    wins = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            window = padded[
                :,
                :,
                i : i + stride[0] * (h_out - 1) + 1 : stride[0],
                j : j + stride[1] * (w_out - 1) + 1 : stride[1],
            ]
            won = (window == y) & ~taken
            taken = taken | won
            wins.append(won)
    cells = kernel[0] * kernel[1]
    winners = cast(torch.stack(wins, dim=2), c.dtype)
    if shared is not None:
        winners = winners * shared.unsqueeze(2)
    stacked = (c.unsqueeze(3) * winners.unsqueeze(1)).reshape(-1, channels * cells, h_out, w_out)
    one_hot = torch.eye(cells, dtype=c.dtype, device=c.device).reshape(cells, 1, *kernel)
    scatter = one_hot.repeat(channels, 1, 1, 1)
    hp, wp = height + 2 * padding[0], width + 2 * padding[1]
    output_padding = (
        hp - ((h_out - 1) * stride[0] + kernel[0]),
        wp - ((w_out - 1) * stride[1] + kernel[1]),
    )
    placed = F.conv_transpose2d(stacked, scatter, None, stride, 0, output_padding, channels)
    placed = placed[:, :, padding[0] : padding[0] + height, padding[1] : padding[1] + width]
    return unfold(placed, classes)
