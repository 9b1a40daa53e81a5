"""LRP-epsilon relevance rules as pure tensor functions (method.md, section 1.1).

Relevance tensors carry the class axis next to the batch axis: shape ``(N, K, *features)``.
Saved activations have shape ``(N, *features)`` and are broadcast over K, never copied.
A rule's result may be a :class:`Scaled` relevance ``a * c`` whose class-independent factor
``a`` is kept apart: the next rule down divides by ``stab(z)``, and forms ``a / stab(z)`` once
per image instead of multiplying and dividing the class-folded tensor (one multiply per layer).
Under ``torch.no_grad`` (inference, not tracing) a rule may overwrite a ``Scaled`` relevance's
``c`` that is ``owned`` (a fresh tensor no one else holds): fewer large temporaries, each of them
a fresh mapping the kernel must zero and fault in.
A channels-last input (4-D activations stored NHWC, see :func:`channels_last`) keeps that layout
through every rule, so the transposed convolutions get channels-last operands and nothing large
is reordered; traced exports see NCHW inputs and take the plain branches.
Every function here is built from ONNX ops that TensorRT's parser accepts (Conv,
ConvTranspose, MatMul, Pad, Slice, Concat, Transpose, Reshape, Equal, arithmetic): no MaxUnpool,
no pooling indices, no Col2Im, no data-dependent Python branches.
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
    """Relevance ``a.unsqueeze(1) * c``: ``c`` is (N, K, ...), ``a`` (N, ...) is shared by the classes.

    ``owned``: ``c`` is a fresh result no one else holds, so the next rule may overwrite it.
    """

    c: Tensor
    a: Tensor
    owned: bool = False


Relevance = Tensor | Scaled


def in_place_allowed() -> bool:
    """No autograd and no tracing: training and exported graphs see only out-of-place ops."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.compiler.is_compiling()


def overwritable(r: Relevance, dtype: torch.dtype | None = None) -> bool:
    """Whether a rule may compute in place in ``r.c``: ``owned`` (and of ``dtype``), when :func:`in_place_allowed`."""
    return isinstance(r, Scaled) and r.owned and (dtype is None or r.c.dtype == dtype) and in_place_allowed()


def materialize(r: Relevance) -> Tensor:
    """The relevance tensor (N, K, ...)."""
    if isinstance(r, Tensor):
        return r
    if overwritable(r, r.a.dtype):
        return r.c.mul_(r.a.unsqueeze(1))
    return r.a.unsqueeze(1) * r.c


def add(r1: Relevance, r2: Relevance) -> Relevance:
    """``r1 + r2``; two ``Scaled`` sharing their ``a`` add their ``c`` only (in place in an owned one)."""
    if isinstance(r1, Scaled) and isinstance(r2, Scaled) and r1.a is r2.a:
        if overwritable(r1, r2.c.dtype):
            return Scaled(r1.c.add_(r2.c), r1.a, owned=True)
        if overwritable(r2, r1.c.dtype):
            return Scaled(r2.c.add_(r1.c), r1.a, owned=True)
        return Scaled(r1.c + r2.c, r1.a, owned=True)
    return materialize(r1) + materialize(r2)


def divide(r: Relevance, z: Tensor, eps: float) -> Tensor:
    """``R / stab(z)`` with ``z`` broadcast over the class axis, computed in ``precise`` dtype (in place when owned)."""
    if isinstance(r, Scaled):
        gain = precise(r.a) / stabilise(precise(z), eps)
        if overwritable(r, gain.dtype):
            return r.c.mul_(gain.unsqueeze(1))
        return cast(precise(r.c) * gain.unsqueeze(1), r.c.dtype)
    return cast(precise(r) / stabilise(precise(z.unsqueeze(1)), eps), r.dtype)


def channels_last(t: Tensor) -> bool:
    """Whether a 4-D ``t`` is stored channels-last (and not also plain contiguous, as when C or H*W is 1)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


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
    return Scaled(s @ cast(weight, s.dtype), a, owned=True)


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
    if channels_last(a):
        s = s.contiguous(memory_format=torch.channels_last)
    output_padding = tuple(
        int(a.shape[2 + i])
        - ((int(z.shape[2 + i]) - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1)
        for i in range(2)
    )
    c = transposed_conv2d(s, cast(weight, s.dtype), stride, padding, output_padding, groups, dilation)
    return Scaled(unfold(c, classes), a, owned=True)


def transposed_conv2d(
    s: Tensor,
    w: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    groups: int,
    dilation: tuple[int, int],
) -> Tensor:
    """``F.conv_transpose2d(s, w, None, stride, padding, output_padding, groups, dilation)``, as a Conv where it can be.

    The same map, written for the exported graph (the same code runs eager): ONNX Runtime's CPU
    ConvTranspose is slower than its Conv.

    - stride 1 (any kernel, groups, dilation): a Conv with the per-group transposed, spatially
      flipped weight (:func:`_conv_weight`) and padding ``dilation * (k - 1) - padding`` per
      side, plus ``output_padding`` at the bottom / right. A side whose padding would be
      negative crops the input instead (at stride 1 the same as cropping the output); an
      asymmetric remainder pads or crops the input with one Pad. A 1x1 kernel's Conv weight is
      the transposed weight alone (no flip, no padding).
    - 1x1 kernel, stride > 1 (any padding, groups): a 1x1 Conv at the input's resolution, then
      the zero interleave that puts value ``(i, j)`` at ``(stride * i, stride * j)`` (a Pad of
      the 6-D view), then one Pad to the output size (negative amounts crop).
    - anything else (a strided kernel larger than 1x1): ConvTranspose.

    Channels-last ``s`` (see :func:`channels_last`) gives a channels-last result, as
    ``conv_transpose2d`` does: Conv and a 4-D Pad keep the layout, and the interleave runs on
    the NHWC view. Every size is a Python int from static shapes (no data-dependent branch).
    """
    kernel = static_shape(w, 2)
    if tuple(stride) == (1, 1):
        lows = [dilation[d] * (kernel[d] - 1) - padding[d] for d in range(2)]
        conv_padding = (max(0, lows[0]), max(0, lows[1]))  # Conv pads both sides alike
        extra = [(lows[d] - conv_padding[d], lows[d] + output_padding[d] - conv_padding[d]) for d in range(2)]
        if any(extra[0] + extra[1]):
            s = F.pad(s, (*extra[1], *extra[0]))
        return F.conv2d(s, _conv_weight(w, groups), None, 1, conv_padding, dilation, groups)
    if kernel == (1, 1):
        return _interleave(F.conv2d(s, _conv_weight(w, groups), None, 1, 0, 1, groups), stride, padding, output_padding)
    return F.conv_transpose2d(s, w, None, stride, padding, output_padding, groups, dilation)


def _conv_weight(w: Tensor, groups: int) -> Tensor:
    """The Conv weight of ``w``'s transposed map: (Cout, Cin/g, kh, kw) -> (Cin, Cout/g, kh, kw), per group, flipped."""
    c_out, c_in, kh, kw = static_shape(w, 0)
    t = w.reshape(groups, c_out // groups, c_in, kh, kw).transpose(1, 2).reshape(groups * c_in, c_out // groups, -1)
    if kh * kw > 1:  # the flip as a Gather with constant indices: the exporter folds it into the weight (not a Slice)
        t = t.index_select(2, torch.tensor(range(kh * kw - 1, -1, -1), device=w.device))
    return t.reshape(groups * c_in, c_out // groups, kh, kw)


def _interleave(c: Tensor, stride: tuple[int, int], padding: tuple[int, int], output_pad: tuple[int, int]) -> Tensor:
    """A 1x1 ConvTranspose's scatter: ``c[..., i, j]`` at ``(stride * i - padding, ...)``, zeros elsewhere.

    The (h, 1, w, 1) view padded to (h, sh, w, sw) and flattened, then padded (or cropped) to
    the transposed conv's ``(h - 1) * stride - 2 * padding + 1 + output_pad`` rows / columns.
    """
    channels, h, w = static_shape(c)
    sh, sw = stride
    if channels_last(c):  # pad the NHWC view: the copies run over C and the result stays channels-last
        grid = F.pad(c.permute(0, 2, 3, 1).reshape(-1, h, 1, w, 1, channels), (0, 0, 0, sw - 1, 0, 0, 0, sh - 1))
        placed = grid.reshape(-1, h * sh, w * sw, channels).permute(0, 3, 1, 2)
    else:
        grid = F.pad(c.reshape(-1, channels, h, 1, w, 1), (0, sw - 1, 0, 0, 0, sh - 1))
        placed = grid.reshape(-1, channels, h * sh, w * sw)
    ends = [(size - 1) * stride[d] + 1 + output_pad[d] - padding[d] for d, size in enumerate((h, w))]
    crop = (-padding[1], ends[1] - w * sw, -padding[0], ends[0] - h * sh)
    return F.pad(placed, crop) if any(crop) else placed


def gamma_conv2d(
    a: Tensor,
    z: Tensor,
    r: Relevance,
    weight: Tensor,
    bias: Tensor | None,
    gamma: float,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    eps: float,
) -> Scaled:
    """LRP-gamma (zennit's ``Gamma``): the conv rule with weight ``W + gamma * W+`` and bias ``b + gamma * b+``.

    ``z`` is the layer's pre-activation with weight ``weight`` and the detached ``bias``; the
    modified pre-activation adds ``gamma * (conv(a, W+) + b+)``, differentiable where the saved
    activation ``a`` is (held fixed with it under ``--heatmap-grad tied``). ``gamma = 0`` is
    LRP-epsilon. Favouring positive contributions makes relevance cancel less.
    """
    positive = weight.clamp(min=0)
    bias_plus = None if bias is None else cast(bias.detach().clamp(min=0), a.dtype)
    extra = F.conv2d(a, cast(positive, a.dtype), bias_plus, stride, padding, dilation, groups)
    if not a.requires_grad:
        extra = extra.detach()
    return conv2d(a, z + gamma * extra, r, weight + gamma * positive, stride, padding, dilation, groups, eps)


def input_conv2d(
    rule: str,
    a: Tensor,
    r: Relevance,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    eps: float,
) -> Tensor:
    """The input layer's rule, independent of the pixel values (zennit's ``Flat`` / ``WSquare``).

    ``flat`` spreads each output's relevance evenly over its receptive field; ``wsquare`` in
    proportion to the squared weights. Both are the conv rule with ones as the input and ones
    (``flat``) or ``W**2`` (``wsquare``) as the weight, so zero padding receives nothing.
    """
    w = torch.ones_like(weight) if rule == "flat" else weight * weight
    ones = torch.ones_like(a[:1])
    z = F.conv2d(ones, cast(w, ones.dtype), None, stride, padding, dilation, groups)
    return conv2d(ones, z, materialize(r), w, stride, padding, dilation, groups, eps).c


def batchnorm(x: Tensor, y: Tensor, r: Relevance, scale: Tensor, eps: float) -> Relevance:
    """``R_in = (s * x / stab(y)) * R``; the factor is detached (method.md, 1.3)."""
    sx = x * scale.view(1, -1, 1, 1)
    factor = cast(precise(sx) / stabilise(precise(y), eps), x.dtype).detach()
    if isinstance(r, Scaled):
        return Scaled(r.c, r.a * factor, r.owned)
    return factor.unsqueeze(1) * r


def residual(f: Tensor, s: Tensor, total: Tensor, r: Relevance, eps: float) -> tuple[Scaled, Scaled]:
    """The shares of ``R`` that go to the two summands of ``total = f(x) + s(x)`` (one division)."""
    divided = divide(r, total, eps)
    return Scaled(divided, f), Scaled(divided, s)


def _first_max_weights(
    a: Tensor, y: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dtype: torch.dtype
) -> dict[tuple[int, int], Tensor]:
    """Per window offset ``(i, j)``: 1 where it holds its window's first max (scan order), else 0; (N, C, *y)."""
    h_out, w_out = static_shape(y, 2)
    padded = F.pad(a, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
    taken = torch.zeros_like(y, dtype=torch.bool)
    wins = {}
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
            wins[i, j] = cast(won, dtype)
    return wins


def _phase_grid(phases: list[list[Tensor]], channels_last: bool = False) -> Tensor:
    """``phases[p][q]`` (..., C, h, w) as one (..., C, h, sh, w, sw) grid: row ``h*sh + p``, column ``w*sw + q`` flat.

    Plain: a view of the phases stacked ahead of the spatial dims (stacking on the last dim
    would copy in runs of one element). ``channels_last``: stored (..., h, sh, w, sw, C), so
    flattening is a view and the result stays channels-last; the copies run over C.
    """
    if channels_last:
        rows = [torch.stack([t.movedim(-3, -1) for t in row], dim=-2) for row in phases]
        return torch.stack(rows, dim=-4).movedim(-1, -5)
    sh, sw = len(phases), len(phases[0])
    stacked = torch.stack([t for row in phases for t in row], dim=-3)
    grid = stacked.reshape((-1, *static_shape(stacked, 1)[:-3], sh, sw, *static_shape(stacked, stacked.dim() - 2)))
    d = grid.dim()
    return grid.permute(*range(d - 4), d - 2, d - 4, d - 1, d - 3)


def _pad_spatial(t: Tensor, pad: tuple[int, int, int, int], channels_last: bool) -> Tensor:
    """``F.pad`` of the last two dims of (N, K, C, H, W); padded as (N*K, C, H, W) to keep a channels-last layout."""
    if not channels_last:
        return F.pad(t, pad)
    return unfold(F.pad(fold(t), pad), int(t.shape[1]))


def _flatten_grid(grid: Tensor) -> Tensor:
    """(..., h, sh, w, sw) -> (..., h*sh, w*sw)."""
    h, sh, w, sw = static_shape(grid, grid.dim() - 4)
    return grid.reshape((-1, *static_shape(grid, 1)[:-4], h * sh, w * sw))


def _phase_sums(
    c: Tensor,
    weights: dict[tuple[int, int], Tensor],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    channels_last: bool,
) -> list[list[Tensor]]:
    """Per phase ``(i % sh, j % sw)``: the sum of ``c * weight`` over its offsets, shifted by ``(i // sh, j // sw)``.

    Phases are ``(h_out + (kh - 1) // sh, w_out + (kw - 1) // sw)`` cells; a phase no offset
    falls in (kernel < stride) is zero.
    """
    sh, sw = stride
    ru, rv = (kernel[0] - 1) // sh, (kernel[1] - 1) // sw
    h_q, w_q = int(c.shape[-2]) + ru, int(c.shape[-1]) + rv
    c_pad = _pad_spatial(c, (rv, rv, ru, ru), channels_last)
    sums: dict[tuple[int, int], Tensor] = {}
    accumulate = in_place_allowed()
    for (i, j), w in weights.items():
        u, v = i // sh, j // sw
        shifted = c_pad[..., ru - u : ru - u + h_q, rv - v : rv - v + w_q]
        weight = F.pad(w, (v, rv - v, u, ru - u)).unsqueeze(1)
        phase = (i % sh, j % sw)
        if phase not in sums:
            sums[phase] = shifted * weight
        elif accumulate:  # the sums are this function's own tensors
            sums[phase].addcmul_(shifted, weight)
        else:
            sums[phase] = sums[phase] + shifted * weight
    zero = torch.zeros_like(sums[0, 0])
    return [[sums.get((p, q), zero) for q in range(sw)] for p in range(sh)]


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
    contributions of overlapping windows sum. Padded-input row ``stride * o + i`` (window ``o``,
    offset ``i``) is row ``o + i // stride`` of phase ``i % stride``: each phase sums its offsets'
    shares at the output resolution, then the phases are interleaved. Without overlap
    (kernel <= stride) a phase holds one offset, and the result is ``R`` upsampled (a broadcast)
    times the interleaved winner mask. Built from Pad, Slice, Equal, Mul, Add, Concat, Transpose
    and Reshape.
    """
    c, shared = (r.c, r.a) if isinstance(r, Scaled) else (r, None)
    layout = channels_last(a)
    weights = _first_max_weights(a, y, kernel, stride, padding, c.dtype)
    if shared is not None:
        weights = {offset: w * shared for offset, w in weights.items()}
    if kernel[0] <= stride[0] and kernel[1] <= stride[1]:
        absent = torch.zeros_like(weights[0, 0])
        grid = [[weights.get((p, q), absent) for q in range(stride[1])] for p in range(stride[0])]
        mask = _phase_grid(grid, layout) if layout else _phase_grid(grid).contiguous()
        placed = _flatten_grid(c[:, :, :, :, None, :, None] * mask.unsqueeze(1))
    else:
        placed = _flatten_grid(_phase_grid(_phase_sums(c, weights, kernel, stride, layout), layout))
    height, width = static_shape(a, 2)
    missing = [max(0, padding[d] + size - int(placed.shape[d - 2])) for d, size in enumerate((height, width))]
    if max(missing) > 0:  # rows and columns no window covers (floor mode)
        placed = _pad_spatial(placed, (0, missing[1], 0, missing[0]), layout)
    return placed[..., padding[0] : padding[0] + height, padding[1] : padding[1] + width]


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
    c = ph.T @ s @ pw
    if channels_last(a):  # a MatMul's result is plain; reorder the (last, smallest) feature map here, once
        c = unfold(fold(c).contiguous(memory_format=torch.channels_last), int(c.shape[1]))
    return Scaled(c, a, owned=True)


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
