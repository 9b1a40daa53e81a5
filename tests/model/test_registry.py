"""The backbone registry: built-in entries, and a user's own backbone through train, checkpoint,
export and segment (in-process, so the registration is visible everywhere)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from tests.model.nets import Chain
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.model.card_files import read_onnx_card
from twdeploy.model.io import load_model
from twdeploy.model.registry import (
    TFLITE_NORMALIZATION,
    backbone_names,
    build_backbone,
    get_backbone,
    register_backbone,
    unregister_backbone,
)
from twdeploy.training.config import TrainConfig
from twdeploy.training.trainer import train

CUSTOM = "test_custom_net"
CUSTOM_NORMALIZATION = {"mode": "meanstd", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def custom_net(num_classes: int, in_channels: int) -> Chain:
    return Chain(
        nn.Conv2d(in_channels, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(1),
        nn.Linear(8, num_classes),
    )


@pytest.fixture
def custom() -> Iterator[str]:
    register_backbone(CUSTOM, custom_net, image_size=64, normalization=CUSTOM_NORMALIZATION)
    yield CUSTOM
    unregister_backbone(CUSTOM)


def test_builtin_entries() -> None:
    names = backbone_names()
    assert {"vgg16", "resnet18", "resnet101", "efficientnet_lite0", "vgg_mini", "resnet_mini"} <= set(names)
    assert get_backbone("efficientnet_lite0").normalization == TFLITE_NORMALIZATION
    assert get_backbone("efficientnet_lite0").pretrained is not None
    assert get_backbone("resnet18").pretrained is None
    assert get_backbone("vgg_mini").image_size == 64


def test_duplicate_and_unknown_names(custom: str) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(custom, custom_net)
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_backbone("nope", 3)
    with pytest.raises(TwdeployError, match=r"unknown architecture 'nope'; choose one of: .*test_custom_net"):
        TrainConfig(arch="nope").validate()


def test_custom_backbone_round_trips_through_checkpoint_export_and_segment(custom: str, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data="synthetic:24",
        arch=custom,
        image_size=64,
        batch_size=4,
        steps=2,
        eval_every=2,
        log_every=1,
        val_images=4,
        normalization="meanstd",
        out=str(tmp_path),
        name="custom",
    )
    run = train(cfg, quiet=True).run_dir
    model, card = load_model(run)
    assert card.arch == custom and card.normalization == CUSTOM_NORMALIZATION
    assert isinstance(model.encoder, Chain)

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert read_onnx_card(run / "export" / "model.onnx") == card
    assert json.loads((run / "export" / "export_report.json").read_text())["passed"]

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        cv2.imwrite(str(images / f"{name}.png"), rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    masks = {}
    for backend, source in (("torch", run), ("onnx", run / "export" / "model.onnx")):
        out = tmp_path / backend
        result = runner.invoke(
            app, ["segment", str(source), str(images), "--out", str(out), "--device", "cpu"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        masks[backend] = [np.asarray(Image.open(out / "masks" / f"{n}.png")) for n in ("a", "b")]
    for torch_mask, onnx_mask in zip(masks["torch"], masks["onnx"], strict=True):
        assert torch_mask.shape == (50, 70)
        assert (torch_mask == onnx_mask).mean() > 0.99
