"""``--model unet`` end to end through the CLI: train, export (verified), segment with ONNX Runtime and torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from tests.inference.tiny_model import write_mixed_folder
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.export.onnx import read_card
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_unet_trains_exports_and_segments(tmp_path: Path) -> None:
    text = _ok(
        "train", "--model", "unet", "--data", "synthetic:32", "--arch", "resnet_mini", "--steps", "3",
        "--eval-every", "3", "--val-images", "4", "--batch-size", "4", "--pixel-labels", "4",
        "--device", "cpu", "--out", str(tmp_path), "--name", "unet",
    )
    assert "tag F1 -" in text
    run = tmp_path / "unet"
    _ok("export", str(run), "--batch", "2")
    onnx_path = run / "export" / "model.onnx"
    assert read_card(onnx_path).model == "unet"
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["passed"] and report["lint"] == []
    good = write_mixed_folder(tmp_path / "images")
    masks = {}
    for name, model in (("onnx", onnx_path), ("torch", run)):
        out = tmp_path / name
        text = _ok("segment", str(model), str(tmp_path / "images"), "--out", str(out), "--device", "cpu")
        assert "Written: 4" in text
        for stem, size in good.items():
            mask = Image.open(out / "masks" / f"{stem}.png")
            assert (mask.height, mask.width) == size
            masks[name, stem] = np.asarray(mask)
    for stem in good:
        assert (masks["onnx", stem] == masks["torch", stem]).mean() > 0.999


def test_topk_export_of_a_unet_is_a_one_line_error(tmp_path: Path) -> None:
    card = ModelCard("vgg_mini", ("background", "a", "b"), (64, 64), model="mtunet")
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", card.build().eval(), card)
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--topk", "1"])
    assert isinstance(result.exception, TwdeployError)  # main() prints it as one line and exits 1
    assert "apply to heatmap models" in str(result.exception) and "\n" not in str(result.exception)
