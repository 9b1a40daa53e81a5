"""``export --simplify``: onnxslim's graph keeps the card, passes the lint and verifies against torch."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from twdeploy.cli.app import app
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import read_onnx_card
from twdeploy.model.io import save_checkpoint

pytest.importorskip("onnxslim")
CARD = ModelCard("vgg_mini", ("background", "a", "b"), image_size=(64, 64))


def test_simplified_export_is_verified_and_keeps_its_card(tmp_path):
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", CARD.build().eval(), CARD)
    sizes = {}
    for name, extra in (("plain", []), ("slim", ["--simplify"])):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(out), "--topk", "1", *extra])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "export_report.json").read_text())
        assert report["passed"] and report["settings"]["simplify"] == bool(extra)
        assert read_onnx_card(out / "model.onnx") == CARD.with_selection(topk=1)
        sizes[name] = len(onnx.load(out / "model.onnx").graph.node)
    assert sizes["slim"] <= sizes["plain"]
