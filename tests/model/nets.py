"""Small bias-free ReLU nets covering every relevance rule, for the identity tests."""

from __future__ import annotations

import torch
from torch import nn

from twdeploy.model.backbones import VGG, BasicBlock, Bottleneck, ChainNet, ResNet
from twdeploy.model.efficientnet import EfficientNetLite, Stage


class Chain(ChainNet):
    """A ChainNet over an explicit list of layers."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def chain(self) -> list[nn.Module]:
        return [self.layers]


def strip_biases(net: nn.Module) -> nn.Module:
    """Remove every bias and batch-norm shift (eval mode), so LRP-0 conserves relevance."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d):
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def zoo(num_classes: int = 5) -> dict[str, ChainNet]:
    """One net per rule family: VGG-style, ResNet with basic and bottleneck blocks, odd layers, EfficientNet-Lite."""
    torch.manual_seed(0)
    odd = Chain(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2),
        nn.ReLU6(),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(8, 6, 3, stride=2, padding=0),
        nn.ReLU(),
        nn.MaxPool2d(2, 1),
        nn.AdaptiveAvgPool2d((3, 2)),
        nn.Flatten(1),
        nn.Dropout(0.1),
        nn.Linear(36, num_classes),
    )
    return {
        "vgg": VGG([8, "M", 16, "M", 16, "M"], num_classes, hidden=32, pool=3),
        "vgg_bn": VGG([8, "M", 16, "M"], num_classes, batch_norm=True, hidden=16, pool=2),
        "resnet_basic": ResNet(BasicBlock, [1, 1], num_classes, width=8),
        "resnet_bottleneck": ResNet(Bottleneck, [1, 2], num_classes, width=4),
        "odd_layers": odd,
        # no-expand block, strided MBConv with asymmetric "same" padding, inverted residual
        "efficientnet_lite": EfficientNetLite(num_classes, stages=(Stage(1, 3, 1, 1, 8), Stage(2, 5, 2, 6, 16))),
    }
