"""``--weights FILE`` / ``--init RUN`` start a run from given weights with the normalisation they expect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.io import load_model, read_checkpoint
from twdeploy.model.registry import IMAGENET_NORMALIZATION, build_backbone
from twdeploy.training.config import TrainConfig
from twdeploy.training.trainer import train

# A learning rate so small that one AdamW step leaves the start weights unchanged to 1e-6.
FROZEN = dict(lr=1e-9, weight_decay=0.0)


def _cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(
        data="synthetic:24",
        arch="resnet_mini",
        image_size=64,
        batch_size=4,
        steps=1,
        eval_every=1,
        log_every=1,
        val_images=4,
        out=str(tmp_path),
        name=name,
        **FROZEN,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def imagenet_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(7)
    state = build_backbone("resnet_mini", 1000).state_dict()
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    return path, state


def test_weights_file_starts_the_run_with_the_pretrained_normalization(tmp_path: Path, imagenet_file) -> None:
    path, state = imagenet_file
    run = train(_cfg(tmp_path, "pre", weights=str(path)), quiet=True).run_dir
    assert json.loads((run / "config.json").read_text())["normalization"] == "meanstd"
    model, card = load_model(run / "checkpoints" / "last.pt", fold_bn=False)
    assert card.normalization == IMAGENET_NORMALIZATION
    torch.testing.assert_close(model.encoder.layer3[0].conv2.weight, state["layer3.0.conv2.weight"], atol=1e-6, rtol=0)
    assert model.encoder.fc.weight.shape[0] == card.num_classes


def test_init_continues_from_an_earlier_run(tmp_path: Path, imagenet_file) -> None:
    first = train(_cfg(tmp_path, "first", weights=str(imagenet_file[0])), quiet=True).run_dir
    second = train(_cfg(tmp_path, "second", init=str(first)), quiet=True).run_dir
    assert json.loads((second / "config.json").read_text())["normalization"] == "meanstd"
    before = read_checkpoint(first / "checkpoints" / "last.pt")["model"]
    after = read_checkpoint(second / "checkpoints" / "last.pt")["model"]
    for key in ("encoder.conv1.weight", "encoder.fc.weight", "encoder.fc.bias"):
        torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0)


def test_weights_and_init_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TwdeployError, match="--weights and --init both given"):
        _cfg(tmp_path, "both", weights="imagenet", init="runs/x").validate()


def test_cli_weights_imagenet_without_packaged_weights_is_one_line(tmp_path: Path) -> None:
    args = ["train", "--arch", "resnet_mini", "--weights", "imagenet", "--steps", "1", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "twdeploy", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "resnet_mini has no packaged ImageNet weights" in result.stderr and "--weights FILE" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # no half-made run folder
