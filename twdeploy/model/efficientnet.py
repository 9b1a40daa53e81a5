"""EfficientNet-Lite (Tan & Le; TF-lite variant): B0 block layout, ReLU6, no squeeze-excite.

The stem (32) and head (1280) widths are fixed, BN eps is 1e-3 and the depthwise/strided convs
use TensorFlow "same" padding, written out as an explicit :class:`SamePad2d` layer before a
conv without padding. Parameter names follow ``efficientnet_pytorch`` without the leading
underscores, so :func:`from_efficientnet_pytorch` maps its state dicts one for one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from twdeploy.model import rules
from twdeploy.model.backbones import ChainNet, ResidualBlock
from twdeploy.model.lrp import DecoderContext

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
STEM, HEAD = 32, 1280


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: repeats, kernel, first stride, expansion, output channels."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


B0_STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) of one spatial axis."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Zero padding that makes the following ``kernel``/``stride`` conv TensorFlow "same"."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def padding_for(self, x: Tensor) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` for an input of ``x``'s (static) size."""
        height, width = rules.static_shape(x, 2)
        top, bottom = same_padding(height, self.kernel, self.stride)
        left, right = same_padding(width, self.kernel, self.stride)
        return left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        return self.lrp_forward(x)[0]

    def lrp_forward(self, x: Tensor) -> tuple[Tensor, Any]:
        padding = self.padding_for(x)
        return F.pad(x, padding), (padding, rules.static_shape(x, 2))

    def lrp_relevance(self, saved: Any, r: Tensor, ctx: DecoderContext) -> Tensor:
        padding, size = saved
        return rules.crop(r, padding, size)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class _MBConvLayers(nn.Module):
    """The layers of an MBConv block: [1x1 expand, BN, ReLU6], pad + depthwise, BN, ReLU6, 1x1 project, BN."""

    def build_layers(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        hidden = cin * expand
        self.expand = expand != 1
        if self.expand:
            self.expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self.bn0 = _bn(hidden)
        self.pad = SamePad2d(kernel, stride)
        self.depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self.bn1 = _bn(hidden)
        self.relu = nn.ReLU6()
        self.project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn2 = _bn(cout)

    def layers(self) -> list[nn.Module]:
        """The block's layers in execution order."""
        head = [self.expand_conv, self.bn0, self.relu] if self.expand else []
        return [*head, self.pad, self.depthwise_conv, self.bn1, self.relu, self.project_conv, self.bn2]


class MBConv(_MBConvLayers, ChainNet):
    """An MBConv block without a skip (stride 2 or a change of width)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        self.build_layers(cin, cout, kernel, stride, expand)

    def chain(self) -> list[nn.Module]:
        return self.layers()


class InvertedResidual(_MBConvLayers, ResidualBlock):
    """An MBConv block with the identity skip, ``x + f(x)`` (no activation after the sum)."""

    relu_after_sum = False

    def __init__(self, channels: int, kernel: int, expand: int) -> None:
        super().__init__()
        self.build_layers(channels, channels, kernel, 1, expand)
        self.downsample = None

    def residual_branch(self) -> list[nn.Module]:
        return self.layers()


def _repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


def _width(channels: int, width: float, divisor: int = 8) -> int:
    """``efficientnet_pytorch.round_filters``: scale and round to a multiple of ``divisor``."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


class EfficientNetLite(ChainNet):
    """EfficientNet-Lite with ``width``/``depth`` multipliers (lite0: 1.0/1.0, lite1: 1.0/1.1, lite2: 1.1/1.2).

    As in the Lite variants, the stem and head widths and the repeats of the first and last
    stage are not scaled.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
        depth: float = 1.0,
        dropout: float = 0.2,
        stages: tuple[Stage, ...] = B0_STAGES,
    ) -> None:
        super().__init__()
        self.stem_pad = SamePad2d(3, 2)
        self.conv_stem = nn.Conv2d(in_channels, STEM, 3, 2, bias=False)
        self.bn0 = _bn(STEM)
        self.relu = nn.ReLU6()
        blocks: list[nn.Module] = []
        cin = STEM
        for index, stage in enumerate(stages):
            cout = _width(stage.channels, width)
            fixed = index in (0, len(stages) - 1)
            repeats = stage.repeats if fixed else _repeats(stage.repeats, depth)
            for i in range(repeats):
                stride = stage.stride if i == 0 else 1
                if stride == 1 and cin == cout:
                    blocks.append(InvertedResidual(cin, stage.kernel, stage.expand))
                else:
                    blocks.append(MBConv(cin, cout, stage.kernel, stride, stage.expand))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(cin, HEAD, 1, bias=False)
        self.bn1 = _bn(HEAD)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def chain(self) -> list[nn.Module]:
        return [
            self.stem_pad,
            self.conv_stem,
            self.bn0,
            self.relu,
            self.blocks,
            self.conv_head,
            self.bn1,
            self.relu,
            self.avgpool,
            self.flatten,
            self.dropout,
            self.fc,
        ]


def from_efficientnet_pytorch(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An ``efficientnet_pytorch``-style state dict (``_blocks.0._bn1.weight``) in our names."""
    return {".".join(part.removeprefix("_") for part in key.split(".")): value for key, value in state.items()}
