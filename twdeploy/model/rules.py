"""LRP-epsilon relevance rules as pure tensor functions (method.md, section 1.1).

Relevance tensors carry the class axis next to the batch axis: shape ``(N, K, *features)``.
Saved activations have shape ``(N, *features)`` and are broadcast over K, never copied.
A rule's result may be a :class:`Scaled` relevance ``a * c`` whose class-independent factor
``a`` is kept apart: the next rule down divides by ``stab(z)``, and forms ``a / stab(z)`` once
per image instead of multiplying and dividing the class-folded tensor (one multiply per layer).
Every function here is built from ONNX ops that TensorRT's parser accepts (Conv,
ConvTranspose, MatMul, Slice, Equal, Where, arithmetic): no MaxUnpool, no pooling indices,
no Col2Im, no data-dependent Python branches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``; no op (and no Cast node in a traced graph) when it already is."""
    return t if t.dtype == dtype else t.to(dtype)


def stabilise(z: Tensor, eps: float) -> Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1`` (zennit's sign-aware stabiliser)."""
    return z + (cast(z >= 0, z.dtype) * 2 - 1) * eps


def precise(t: Tensor) -> Tensor:
    """Half and bfloat16 tensors in float32: divisions in the relevance path stay float32."""
    return cast(t, torch.float32) if t.dtype in _LOW_PRECISION else t


@dataclass(frozen=True)
class Scaled:
    """Relevance ``a.unsqueeze(1) * c``: ``c`` is (N, K, ...), ``a`` (N, ...) is shared by the classes."""

    c: Tensor
    a: Tensor


Relevance = Tensor | Scaled


def materialize(r: Relevance) -> Tensor:
    """The relevance tensor (N, K, ...)."""
    return r if isinstance(r, Tensor) else r.a.unsqueeze(1) * r.c


def add(r1: Relevance, r2: Relevance) -> Relevance:
    """``r1 + r2``; two ``Scaled`` sharing their ``a`` add their ``c`` only."""
    if isinstance(r1, Scaled) and isinstance(r2, Scaled) and r1.a is r2.a:
        return Scaled(r1.c + r2.c, r1.a)
    return materialize(r1) + materialize(r2)


def divide(r: Relevance, z: Tensor, eps: float) -> Tensor:
    """``R / stab(z)`` with ``z`` broadcast over the class axis, computed in ``precise`` dtype."""
    if isinstance(r, Scaled):
        gain = precise(r.a) / stabilise(precise(z), eps)
        return cast(precise(r.c) * gain.unsqueeze(1), r.c.dtype)
    return cast(precise(r) / stabilise(precise(z.unsqueeze(1)), eps), r.dtype)


def static_shape(t: Tensor, start: int = 1) -> tuple[int, ...]:
    """Non-batch dims as Python ints, so traced graphs keep them as constants."""
    return tuple(int(d) for d in t.shape[start:])


def fold(r: Tensor) -> Tensor:
    """(N, K, ...) -> (N*K, ...) for the convolution ops."""
    return r.reshape((-1, *static_shape(r, 2)))


def unfold(r: Tensor, classes: int) -> Tensor:
    """(N*K, ...) -> (N, K, ...)."""
    return r.reshape((-1, classes, *static_shape(r)))


def linear(a: Tensor, z: Tensor, r: Relevance, weight: Tensor, eps: float) -> Scaled:
    """``R_in = a * (W^T (R / stab(z)))``."""
    s = divide(r, z, eps)
    return Scaled(s @ cast(weight, s.dtype), a)


def conv2d(
    a: Tensor,
    z: Tensor,
    r: Relevance,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    eps: float,
) -> Scaled:
    """``R_in = a * conv_transpose2d(R / stab(z), W)`` with output padding matching ``a``."""
    divided = divide(r, z, eps)
    classes = int(divided.shape[1])
    s = fold(divided)
    output_padding = tuple(
        int(a.shape[2 + i])
        - (
            (int(z.shape[2 + i]) - 1) * stride[i]
            - 2 * padding[i]
            + dilation[i] * (weight.shape[2 + i] - 1)
            + 1
        )
        for i in range(2)
    )
    c = F.conv_transpose2d(s, cast(weight, s.dtype), None, stride, padding, output_padding, groups, dilation)
    return Scaled(unfold(c, classes), a)


def batchnorm(x: Tensor, y: Tensor, r: Relevance, scale: Tensor, eps: float) -> Relevance:
    """``R_in = (s * x / stab(y)) * R``; the factor is detached (method.md, 1.3)."""
    sx = x * scale.view(1, -1, 1, 1)
    factor = cast(precise(sx) / stabilise(precise(y), eps), x.dtype).detach()
    if isinstance(r, Scaled):
        return Scaled(r.c, r.a * factor)
    return factor.unsqueeze(1) * r


def residual(f: Tensor, s: Tensor, total: Tensor, r: Relevance, eps: float) -> tuple[Scaled, Scaled]:
    """The shares of ``R`` that go to the two summands of ``total = f(x) + s(x)`` (one division)."""
    divided = divide(r, total, eps)
    return Scaled(divided, f), Scaled(divided, s)


def _window_offsets(kernel: tuple[int, int]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]


def maxpool2d(
    a: Tensor,
    y: Tensor,
    r: Relevance,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor:
    """Winner-take-all: each output cell's relevance goes to the first max of its window.

    Equals ``R * d maxpool(a) / d a`` (torch's gradient, first max in scan order on ties);
    contributions of overlapping windows sum. Built from Slice, Equal and a grouped
    ConvTranspose with a one-hot kernel (the scatter back to input positions).
    """
    channels, height, width = static_shape(a)
    c, shared = (r.c, r.a) if isinstance(r, Scaled) else (r, None)
    classes = int(c.shape[1])
    h_out, w_out = static_shape(y, 2)
    padded = F.pad(a, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
    taken = torch.zeros_like(y, dtype=torch.bool)
    wins = []
    for i, j in _window_offsets(kernel):
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


def pooling_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(size_out, size_in) averaging matrix of torch's adaptive average pooling windows."""
    rows = []
    for o in range(size_out):
        start = (o * size_in) // size_out
        end = -((-(o + 1) * size_in) // size_out)
        row = [0.0] * size_in
        for k in range(start, end):
            row[k] = 1.0 / (end - start)
        rows.append(row)
    return torch.tensor(rows, dtype=dtype, device=device)


def adaptive_avgpool2d(x: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Adaptive average pooling as ``P_h x P_w^T``: exact for any sizes, exports as MatMul."""
    ph = pooling_matrix(int(x.shape[2]), output_size[0], x.dtype, x.device)
    pw = pooling_matrix(int(x.shape[3]), output_size[1], x.dtype, x.device)
    return ph @ x @ pw.T


def adaptive_avgpool2d_relevance(a: Tensor, y: Tensor, r: Relevance, eps: float) -> Scaled:
    """Epsilon rule on the pool as a linear map: ``R_in = a * P_h^T (R / stab(y)) P_w``."""
    s = divide(r, y, eps)
    ph = pooling_matrix(int(a.shape[2]), int(y.shape[2]), s.dtype, s.device)
    pw = pooling_matrix(int(a.shape[3]), int(y.shape[3]), s.dtype, s.device)
    return Scaled(ph.T @ s @ pw, a)


def avgpool2d(
    a: Tensor,
    y: Tensor,
    r: Relevance,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    eps: float,
) -> Scaled:
    """Epsilon rule for ``AvgPool2d`` (count_include_pad): the conv rule with a uniform grouped kernel."""
    channels = int(a.shape[1])
    like = r.c if isinstance(r, Scaled) else r
    uniform = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=like.dtype, device=a.device)
    return conv2d(a, y, r, uniform, stride, padding, (1, 1), channels, eps)


def crop(r: Tensor, padding: tuple[int, int, int, int], size: tuple[int, int]) -> Tensor:
    """Relevance through zero padding ``(left, right, top, bottom)``: the crop back to ``size``.

    The padded zeros are inputs of value 0, so the next layer's rule gave them none: nothing is lost.
    """
    left, _, top, _ = padding
    return r[..., top : top + size[0], left : left + size[1]]
