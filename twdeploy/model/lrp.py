"""The stateless encoder/decoder traversal: forward with saved activations, relevance back.

``lrp_forward(module, x) -> (y, saved)`` runs a module and returns what its relevance rule
needs; ``lrp_relevance(module, saved, r, ctx)`` pushes relevance ``(N, K, *out)`` back to
``(N, K, *in)``; inside a network the relevance may travel as ``rules.Scaled`` (modules
that accept it set ``lazy_relevance = True``; every other rule gets a plain tensor). Nothing
is stored on modules and no hooks are used, so one function serves training, inference and
export. Containers (blocks, whole backbones) take part by defining
``lrp_forward``/``lrp_relevance`` methods of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from twdeploy.model import rules

PASS_THROUGH = (nn.ReLU, nn.ReLU6, nn.Dropout, nn.Identity)
SUPPORTED = (
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Sequential,
    nn.ZeroPad2d,
    *PASS_THROUGH,
)


BN_RULES = ("separate", "canonical")
INPUT_RULES = ("epsilon", "flat", "wsquare")
"""The input layer's rule: LRP-epsilon like every layer (the paper), or zennit's ``Flat`` / ``WSquare``."""


@dataclass(frozen=True)
class DecoderContext:
    """Settings of one decoder pass.

    ``eps`` is the stabiliser; ``weights`` optionally replaces the tied weight of a layer
    (keyed by the encoder module), e.g. by an alias parameter sharing its storage.
    ``bn_rule`` ``separate`` stabilises a batch norm as its own layer (the reference);
    ``canonical`` merges it into the conv before it, as :func:`~twdeploy.model.folding.fold_batchnorm`
    does, but with the statistics the forward used and differentiably (method.md 1.3).
    ``input_rule`` (:data:`INPUT_RULES`) applies to ``input_layer``, the conv that reads the image;
    with ``gamma > 0`` every other conv uses LRP-gamma (:func:`rules.gamma_conv2d`).
    """

    eps: float = 1e-6
    weights: Mapping[nn.Module, Tensor] = field(default_factory=dict)
    bn_rule: str = "separate"
    input_rule: str = "epsilon"
    input_layer: nn.Module | None = None
    gamma: float = 0.0

    def weight(self, module: nn.Module) -> Tensor:
        """The weight the decoder uses for ``module``'s transposed map."""
        return self.weights.get(module, module.weight)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _affine(op: Callable[..., Tensor], x: Tensor, module: nn.Conv2d | nn.Linear) -> tuple[Tensor, Tensor]:
    """Output ``y`` of a conv/linear layer and ``z``, the same with the bias detached (method.md 1.3)."""
    bias = module.bias
    if bias is None or not (bias.requires_grad and torch.is_grad_enabled()):
        y = op(x, module.weight, bias)
        return y, y
    out = op(x, module.weight, None)
    shape = (1, -1) + (1,) * (out.dim() - 2)
    return out + bias.view(shape), out + bias.detach().view(shape)


class BatchStatistics:
    """The whole batch a batch-statistics batch norm normalised; its variance is computed when a rule first asks.

    Saved by the forward, so a decoder pass over some images of the batch uses the whole batch's
    statistics, and a plain forward (no decoder) computes nothing extra.
    """

    def __init__(self, x: Tensor) -> None:
        self.x = x

    @functools.cached_property
    def variance(self) -> Tensor:
        """The per-channel variance the forward normalised with (detached)."""
        return self.x.detach().var(dim=(0, 2, 3), unbiased=False)


def _bn_scale(bn: nn.BatchNorm2d, stats: BatchStatistics | None, dtype: torch.dtype) -> Tensor:
    """The per-channel factor ``s`` of ``y = s*x + t`` with the statistics the forward used."""
    var = bn.running_var if stats is None else stats.variance
    scale = torch.rsqrt(rules.cast(var, dtype) + bn.eps)
    return scale * rules.cast(bn.weight, dtype) if bn.weight is not None else scale


def _out_of_place(module: nn.Module, x: Tensor) -> Tensor:
    """Run a pass-through layer without overwriting its input (a saved activation)."""
    if isinstance(module, nn.ReLU6):
        return F.hardtanh(x, 0.0, 6.0)
    if isinstance(module, nn.ReLU):
        return F.relu(x)
    if isinstance(module, nn.Dropout):
        return F.dropout(x, module.p, module.training)
    return x


def check_supported(module: nn.Module) -> None:
    """Raise ``ValueError`` naming the first layer the relevance decoder cannot handle."""
    for name, m in module.named_modules():
        if hasattr(m, "lrp_forward") or isinstance(m, PASS_THROUGH):
            continue
        if not isinstance(m, SUPPORTED):
            raise ValueError(f"layer {name!r} ({type(m).__name__}) has no relevance rule")
        if isinstance(m, nn.Conv2d) and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
            raise ValueError(f"conv {name!r}: only numeric zero padding is supported")
        if isinstance(m, nn.MaxPool2d) and (m.ceil_mode or m.return_indices or _pair(m.dilation) != (1, 1)):
            raise ValueError(f"max-pool {name!r}: ceil_mode, dilation and return_indices are unsupported")
        if isinstance(m, nn.ZeroPad2d) and min(m.padding) < 0:
            raise ValueError(f"zero-pad {name!r}: negative padding (cropping) is unsupported")
        if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or not m.count_include_pad or m.divisor_override):
            raise ValueError(f"avg-pool {name!r}: only count_include_pad=True without ceil_mode is supported")


def adaptive_output_size(module: nn.AdaptiveAvgPool2d, x: Tensor) -> tuple[int, int]:
    """The pool's output size with ``None`` entries resolved against the input."""
    size = module.output_size
    size = (size, size) if isinstance(size, int) else size
    return tuple(int(x.shape[2 + i]) if s is None else int(s) for i, s in enumerate(size))


def lrp_forward(module: nn.Module, x: Tensor) -> tuple[Tensor, Any]:
    """Run ``module`` on ``x``; return the output and what its relevance rule needs."""
    if hasattr(module, "lrp_forward"):
        return module.lrp_forward(x)
    if isinstance(module, nn.Sequential):
        return chain_forward(list(module), x)
    if isinstance(module, nn.Conv2d):
        y, z = _affine(module._conv_forward, x, module)
        return y, (x, z)
    if isinstance(module, nn.Linear):
        y, z = _affine(F.linear, x, module)
        return y, (x, z)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        y = rules.adaptive_avgpool2d(x, adaptive_output_size(module, x))
        return y, (x, y)
    if isinstance(module, nn.BatchNorm2d):
        y = module(x)
        return y, (x, y, BatchStatistics(x) if module.training or module.running_var is None else None)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        y = module(x)
        return y, (x, y)
    if isinstance(module, nn.Flatten):
        return module(x), x
    if isinstance(module, nn.ZeroPad2d):
        return F.pad(x, module.padding), rules.static_shape(x, 2)
    if isinstance(module, PASS_THROUGH):
        return _out_of_place(module, x), None
    raise TypeError(f"no relevance rule for {type(module).__name__}")


def lrp_relevance(module: nn.Module, saved: Any, r: rules.Relevance, ctx: DecoderContext) -> rules.Relevance:
    """Push relevance ``r`` (N, K, *out) back through ``module`` to (N, K, *in)."""
    if hasattr(module, "lrp_relevance"):
        return module.lrp_relevance(saved, r if getattr(module, "lazy_relevance", False) else rules.materialize(r), ctx)
    if isinstance(module, nn.Sequential):
        return chain_relevance(list(module), saved, r, ctx)
    if isinstance(module, PASS_THROUGH):
        return r
    if isinstance(module, nn.Flatten):
        shape = rules.static_shape(saved)
        if isinstance(r, rules.Scaled):
            return rules.Scaled(r.c.reshape((-1, int(r.c.shape[1]), *shape)), r.a.reshape((-1, *shape)), r.owned)
        return r.reshape((-1, int(r.shape[1]), *shape))
    if isinstance(module, nn.ZeroPad2d):
        if isinstance(r, rules.Scaled):
            c, shared = rules.crop(r.c, module.padding, saved), rules.crop(r.a, module.padding, saved)
            return rules.Scaled(c, shared, r.owned)
        return rules.crop(r, module.padding, saved)
    if isinstance(module, nn.BatchNorm2d):
        a, y, stats = saved
        return rules.batchnorm(a, y, r, _bn_scale(module, stats, a.dtype), ctx.eps)
    a, y = saved
    if isinstance(module, nn.Conv2d):
        return _conv_relevance(module, a, y, r, ctx.weight(module), module.bias, ctx)
    if isinstance(module, nn.Linear):
        return rules.linear(a, y, r, ctx.weight(module), ctx.eps)
    if isinstance(module, nn.MaxPool2d):
        return rules.maxpool2d(a, y, r, _pair(module.kernel_size), _pair(module.stride), _pair(module.padding))
    if isinstance(module, nn.AvgPool2d):
        return rules.avgpool2d(a, y, r, _pair(module.kernel_size), _pair(module.stride), _pair(module.padding), ctx.eps)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return rules.adaptive_avgpool2d_relevance(a, y, r, ctx.eps)
    raise TypeError(f"no relevance rule for {type(module).__name__}")


def chain_forward(modules: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, list[Any]]:
    """Run modules in order, collecting each one's saved activations."""
    saved = []
    for m in modules:
        x, s = lrp_forward(m, x)
        saved.append(s)
    return x, saved


def chain_relevance(
    modules: Sequence[nn.Module], saved: list[Any], r: rules.Relevance, ctx: DecoderContext
) -> rules.Relevance:
    """Push relevance back through modules run by :func:`chain_forward`."""
    if len(modules) != len(saved):
        raise ValueError(f"{len(modules)} modules but {len(saved)} saved activations")
    i = len(modules) - 1
    while i >= 0:
        if ctx.bn_rule == "canonical" and i > 0 and _conv_then_bn(modules[i - 1], modules[i]):
            r = _conv_bn_relevance(modules[i - 1], modules[i], saved[i - 1], saved[i], r, ctx)
            i -= 2
        else:
            r = lrp_relevance(modules[i], saved[i], r, ctx)
            i -= 1
    return r


def _conv_then_bn(first: nn.Module, second: nn.Module) -> bool:
    return isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d)


def _conv_bn_relevance(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, saved_conv: Any, saved_bn: Any, r: rules.Relevance, ctx: DecoderContext
) -> rules.Relevance:
    """The conv rule on conv + batch norm as one affine map: weight ``s * W``, pre-activation ``y``.

    ``s`` uses the forward's statistics, held fixed (its ``gamma`` trains); the merged bias is
    detached inside ``z`` like every bias (method.md 1.3).
    """
    a, _ = saved_conv
    x, y, stats = saved_bn
    scale = _bn_scale(bn, stats, x.dtype)
    sx = x * scale.view(1, -1, 1, 1)
    shift = (y - sx).detach()
    z = sx + shift
    tied = ctx.weight(conv)
    weight = tied * rules.cast(scale, tied.dtype).view(-1, 1, 1, 1)
    bias = shift[0, :, 0, 0] if conv.bias is None else shift[0, :, 0, 0] + scale * conv.bias.detach()
    return _conv_relevance(conv, a, z, r, weight, bias, ctx)


def _conv_relevance(
    conv: nn.Conv2d,
    a: Tensor,
    z: Tensor,
    r: rules.Relevance,
    weight: Tensor,
    bias: Tensor | None,
    ctx: DecoderContext,
) -> rules.Relevance:
    """The conv rule with ``weight`` and ``bias`` (the bias inside ``z``).

    ``ctx.input_layer`` gets ``ctx.input_rule``; every other conv LRP-gamma when ``ctx.gamma > 0``.
    """
    geometry = (_pair(conv.stride), _pair(conv.padding), _pair(conv.dilation), conv.groups, ctx.eps)
    if conv is ctx.input_layer:
        if ctx.input_rule != "epsilon":
            return rules.input_conv2d(ctx.input_rule, a, r, weight, *geometry)
    elif ctx.gamma > 0:
        return rules.gamma_conv2d(a, z, r, weight, bias, ctx.gamma, *geometry)
    return rules.conv2d(a, z, r, weight, *geometry)
