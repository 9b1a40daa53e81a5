"""Classifier backbones with torchvision's parameter names (VGG, ResNet) and small variants.

A torchvision ImageNet state dict loads into these with ``strict=True`` once the head is
replaced. Every backbone exposes ``lrp_forward``/``lrp_relevance`` through its ordered
``chain()`` of layers, so the relevance decoder needs no hooks.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from twdeploy.model import rules
from twdeploy.model.lrp import DecoderContext, chain_forward, chain_relevance, lrp_forward, lrp_relevance


class ChainNet(nn.Module):
    """A network that is an ordered chain of layers (containers included)."""

    lazy_relevance = True

    def chain(self) -> list[nn.Module]:
        """The layers in execution order."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Plain forward: the logits."""
        return self.lrp_forward(x)[0]

    def lrp_forward(self, x: Tensor) -> tuple[Tensor, list[Any]]:
        """Forward, returning the output and the saved activations of every layer."""
        return chain_forward(self.chain(), x)

    def lrp_relevance(self, saved: list[Any], r: rules.Relevance, ctx: DecoderContext) -> Tensor:
        """Relevance of the input for the output relevance ``r``."""
        return rules.materialize(chain_relevance(self.chain(), saved, r, ctx))


class ResidualBlock(nn.Module):
    """``relu(f(x) + s(x))`` (plain ``f(x) + s(x)`` without ``relu_after_sum``); relevance splits
    in proportion to the two summands."""

    downsample: nn.Module | None
    lazy_relevance = True
    relu_after_sum = True

    def residual_branch(self) -> list[nn.Module]:
        """The layers of ``f``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.lrp_forward(x)[0]

    def lrp_forward(self, x: Tensor) -> tuple[Tensor, Any]:
        f, saved_f = chain_forward(self.residual_branch(), x)
        s, saved_s = lrp_forward(self.downsample, x) if self.downsample is not None else (x, None)
        total = f + s
        out = F.relu(total) if self.relu_after_sum else total
        return out, (saved_f, saved_s, f, s, total)

    def lrp_relevance(self, saved: Any, r: rules.Relevance, ctx: DecoderContext) -> rules.Relevance:
        saved_f, saved_s, f, s, total = saved
        share_f, r_s = rules.residual(f, s, total, r, ctx.eps)
        r_f = chain_relevance(self.residual_branch(), saved_f, share_f, ctx)
        if self.downsample is not None:
            r_s = lrp_relevance(self.downsample, saved_s, r_s, ctx)
        return rules.add(r_f, r_s)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


class BasicBlock(ResidualBlock):
    """torchvision's BasicBlock: two 3x3 convs."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, 3, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = _conv(width, width, 3)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def residual_branch(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.relu, self.conv2, self.bn2]


class Bottleneck(ResidualBlock):
    """torchvision's Bottleneck (ResNet v1.5: the stride sits on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, width * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def residual_branch(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.relu, self.conv2, self.bn2, self.relu, self.conv3, self.bn3]


class ResNet(ChainNet):
    """torchvision's ResNet layout; ``width`` scales every stage (64 for the real ones)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int,
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for stage, blocks in enumerate(layers):
            stage_width = width * 2**stage
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or cin != stage_width * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(cin, stage_width * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(stage_width * block.expansion),
                )
            stage_blocks = [block(cin, stage_width, stride, downsample)]
            cin = stage_width * block.expansion
            stage_blocks += [block(cin, stage_width) for _ in range(1, blocks)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stage_blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(cin, num_classes)
        self.stages = len(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def chain(self) -> list[nn.Module]:
        stages = [getattr(self, f"layer{i + 1}") for i in range(self.stages)]
        return [self.conv1, self.bn1, self.relu, self.maxpool, *stages, self.avgpool, self.flatten, self.fc]


VGG16_CONFIG: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


class VGG(ChainNet):
    """torchvision's VGG layout: ``features``, ``avgpool``, ``classifier``."""

    def __init__(
        self,
        config: list[int | str],
        num_classes: int,
        in_channels: int = 3,
        batch_norm: bool = False,
        hidden: int = 4096,
        pool: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, int(item), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(item)))
            layers.append(nn.ReLU())
            cin = int(item)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(cin * pool * pool, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def chain(self) -> list[nn.Module]:
        return [self.features, self.avgpool, self.flatten, self.classifier]
