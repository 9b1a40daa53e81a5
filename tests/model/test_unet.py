"""U-Net baselines: skips at every resolution change of any ChainNet, card kinds, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twdeploy.model.card import ModelCard
from twdeploy.model.io import load_model, save_checkpoint
from twdeploy.model.segmenter import Segmenter
from twdeploy.model.unet import MultiTaskUNet, UNet, split_chain


def _skip_sizes(model: UNet, size: int) -> list[int]:
    with torch.no_grad():
        _, skips = model.eval().features(torch.rand(1, 3, size, size))
    return [int(s.shape[-1]) for s in skips]


@pytest.mark.parametrize(
    ("arch", "sizes", "channels"),
    [
        ("vgg_mini", [64, 32, 16, 8], [16, 32, 64, 64]),  # before each of the four max-pools
        ("resnet_mini", [32, 16, 8, 4], [16, 16, 32, 64]),  # stem before the max-pool, then layer1-3
        ("resnet18", [32, 16, 8, 4], [64, 64, 128, 256]),
        ("efficientnet_lite0", [32, 16, 8, 4], [16, 24, 40, 112]),  # the stem's explicit padding is no skip
        pytest.param("vgg16", [64, 32, 16, 8, 4], [64, 128, 256, 512, 512], marks=pytest.mark.slow),
    ],
)
def test_skips_at_every_resolution_change(arch: str, sizes: list[int], channels: list[int]) -> None:
    model = UNet(arch, num_classes=3)
    assert _skip_sizes(model, 64) == sizes
    with torch.no_grad():
        _, skips = model.features(torch.rand(1, 3, 64, 64))
        logits, maps = model(torch.rand(2, 3, 64, 64))
    assert [int(s.shape[1]) for s in skips] == channels
    assert logits.shape == (2, 3) and maps.shape == (2, 3, 64, 64)
    torch.testing.assert_close(logits, maps.amax(dim=(2, 3)))


def test_odd_input_size_still_aligns_skips() -> None:
    with torch.no_grad():
        logits, maps = MultiTaskUNet("resnet_mini", num_classes=4).eval()(torch.rand(1, 3, 72, 100))
    assert logits.shape == (1, 4) and maps.shape == (1, 4, 72, 100)


def test_probe_leaves_batch_norm_statistics_alone() -> None:
    model = UNet("resnet_mini", num_classes=3)
    bn = model.encoder.bn1
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) and int(bn.num_batches_tracked) == 0
    assert model.training and bn.training


def test_multitask_logits_come_from_the_encoder_head() -> None:
    model = MultiTaskUNet("vgg_mini", num_classes=3).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits, _ = model(images)
        torch.testing.assert_close(logits, model.encoder(images))
    _, head = split_chain(model.encoder)
    assert isinstance(head[0], torch.nn.AdaptiveAvgPool2d) and head[-1] is model.encoder.classifier[-1]


def test_card_kinds_build_the_right_class_and_old_cards_are_heatmap() -> None:
    names = ("background", "a", "b")
    for kind, cls in (("heatmap", Segmenter), ("unet", UNet), ("mtunet", MultiTaskUNet)):
        card = ModelCard("vgg_mini", names, (64, 64), model=kind)
        assert ModelCard.from_json(card.to_json()) == card
        assert type(card.build()) is cls
    old = ModelCard("vgg_mini", names).to_dict()
    del old["model"]
    assert ModelCard.from_dict(old).model == "heatmap"
    with pytest.raises(ValueError, match="unknown model kind"):
        ModelCard("vgg_mini", names, model="fcn")
    with pytest.raises(ValueError, match="apply to heatmap models"):
        ModelCard("vgg_mini", names, model="unet").with_selection(topk=1)


@pytest.mark.parametrize("kind", ["unet", "mtunet"])
def test_checkpoint_round_trip(tmp_path: Path, kind: str) -> None:
    card = ModelCard("resnet_mini", ("background", "a", "b"), (64, 64), model=kind)
    torch.manual_seed(0)
    model = card.build()
    with torch.no_grad():
        model(torch.rand(4, 3, 64, 64))  # move the batch-norm statistics off their initial values
    model.eval()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", model, card)
    loaded, loaded_card = load_model(tmp_path / "run")
    assert loaded_card == card and type(loaded) is type(model) and not loaded.training
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(loaded(x), model(x), strict=True):
            torch.testing.assert_close(got, want)


def test_encoder_keeps_torchvision_names_for_pretrained_weights() -> None:
    """A classifier's state dict (e.g. ImageNet weights) loads into the U-Net's encoder unchanged."""
    classifier = Segmenter("resnet_mini", num_classes=3).encoder
    model = UNet("resnet_mini", num_classes=3)
    model.encoder.load_state_dict(classifier.state_dict(), strict=True)
    assert all(k.startswith(("encoder.", "decoder.", "classify.")) for k in model.state_dict())
