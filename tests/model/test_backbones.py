"""Backbones carry torchvision's parameter names and shapes, so its state dicts load strictly."""

from __future__ import annotations

import pytest
import torch

from twdeploy.model import backbone_names, build_backbone

# Parameter counts torchvision publishes for its ImageNet models (1000 classes).
PUBLISHED_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
}


def _bn(layout: dict, name: str, c: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        layout[f"{name}.{p}"] = (c,)
    layout[f"{name}.num_batches_tracked"] = ()


def torchvision_resnet(blocks: list[int], bottleneck: bool, classes: int) -> dict[str, tuple]:
    """State-dict keys and shapes of torchvision.models.resnet, written from its definition."""
    out: dict[str, tuple] = {"conv1.weight": (64, 3, 7, 7)}
    _bn(out, "bn1", 64)
    expansion, inplanes = (4 if bottleneck else 1), 64
    for stage, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        for j in range(n):
            p = f"layer{stage + 1}.{j}"
            if bottleneck:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for i, (cout, cin, k) in enumerate(convs, start=1):
                out[f"{p}.conv{i}.weight"] = (cout, cin, k, k)
                _bn(out, f"{p}.bn{i}", cout)
            if j == 0 and (stage > 0 or inplanes != planes * expansion):
                out[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                _bn(out, f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    out["fc.weight"], out["fc.bias"] = (classes, 512 * expansion), (classes,)
    return out


def torchvision_vgg16(batch_norm: bool, classes: int) -> dict[str, tuple]:
    """State-dict keys and shapes of torchvision.models.vgg16(_bn)."""
    out: dict[str, tuple] = {}
    index, cin = 0, 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if item == "M":
            index += 1
            continue
        out[f"features.{index}.weight"], out[f"features.{index}.bias"] = (item, cin, 3, 3), (item,)
        if batch_norm:
            _bn(out, f"features.{index + 1}", item)
        index += 3 if batch_norm else 2
        cin = item
    for i, (cout, fan_in) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (classes, 4096)), strict=True):
        out[f"classifier.{i}.weight"], out[f"classifier.{i}.bias"] = (cout, fan_in), (cout,)
    return out


TORCHVISION = {
    "resnet18": lambda k: torchvision_resnet([2, 2, 2, 2], False, k),
    "resnet34": lambda k: torchvision_resnet([3, 4, 6, 3], False, k),
    "resnet50": lambda k: torchvision_resnet([3, 4, 6, 3], True, k),
    "resnet101": lambda k: torchvision_resnet([3, 4, 23, 3], True, k),
    "vgg16": lambda k: torchvision_vgg16(False, k),
    "vgg16_bn": lambda k: torchvision_vgg16(True, k),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_state_dict_matches_torchvision_one_for_one(name: str) -> None:
    model = build_backbone(name, num_classes=1000)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == TORCHVISION[name](1000)
    params = sum(p.numel() for p in model.parameters())
    assert params == PUBLISHED_PARAMETERS[name]


@pytest.mark.parametrize("name", ["resnet18", "vgg16_bn"])
def test_imagenet_state_dict_loads_strictly_after_head_replacement(name: str) -> None:
    imagenet = {k: torch.randn(s) if s else torch.tensor(0) for k, s in TORCHVISION[name](1000).items()}
    head = "fc" if name.startswith("resnet") else "classifier.6"
    imagenet[f"{head}.weight"], imagenet[f"{head}.bias"] = (
        torch.randn(21, imagenet[f"{head}.weight"].shape[1]),
        torch.randn(21),
    )
    model = build_backbone(name, num_classes=21)
    model.load_state_dict(imagenet, strict=True)
    first = "conv1.weight" if name.startswith("resnet") else "features.0.weight"
    assert torch.equal(model.state_dict()[first], imagenet[first])


def test_input_channels_and_unknown_arch() -> None:
    model = build_backbone("resnet_mini", num_classes=3, in_channels=1)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown architecture 'resnet7'"):
        build_backbone("resnet7", 3)
    assert {"vgg_mini", "resnet_mini", "efficientnet_lite0"} <= set(backbone_names())
