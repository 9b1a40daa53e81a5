"""TrainConfig: JSON round trip and one-line validation errors."""

from pathlib import Path

import pytest

from twdeploy.errors import TwdeployError
from twdeploy.training.config import DEFAULT_STEPS, TrainConfig


def test_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(data="synthetic:100", arch="vgg_mini", pixel_labels=None, steps=7, tie="summed", class_chunk=3)
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == cfg


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "resnet9000"}, "unknown architecture"),
        ({"tie": "both"}, "--tie"),
        ({"device": "tpu"}, "--device"),
        ({"pixel_share": 1.5}, "--pixel-share"),
        ({"steps": 0}, "--steps"),
        ({"stage": "pretrain"}, "--stage"),
        ({"recipe": "fancy"}, "--recipe"),
        ({"recipe": "paper", "stage": "classify"}, "drop --stage"),
        ({"clip_grad": 0.0}, "--clip-grad"),
    ],
)
def test_bad_values_are_one_line_errors(change: dict, message: str) -> None:
    with pytest.raises(TwdeployError, match=message) as info:
        TrainConfig(**change).validate()
    assert "\n" not in str(info.value)


def test_unknown_keys_rejected() -> None:
    with pytest.raises(TwdeployError, match="unknown keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_total_steps() -> None:
    assert TrainConfig(steps=5, epochs=3).total_steps(100) == 5
    assert TrainConfig(epochs=2, batch_size=16).total_steps(100) == 13
    assert TrainConfig().total_steps(100) == DEFAULT_STEPS


def test_heatmap_scale_defaults_to_pixel_count() -> None:
    assert TrainConfig(image_size=64).resolved_heatmap_scale() == 4096.0
    assert TrainConfig(image_size=64, heatmap_scale=1.0).resolved_heatmap_scale() == 1.0
