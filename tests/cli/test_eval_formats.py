"""``twdeploy eval`` on several formats: one table, mIoU per format on the same images; failures are rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import twdeploy
from twdeploy.cli.app import app
from twdeploy.data.synthetic import CLASS_NAMES
from twdeploy.errors import TwdeployError
from twdeploy.export.pipeline import ExportOptions, export
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint
from twdeploy.training.evaluate import evaluate_formats, format_name

pytest.importorskip("onnxruntime")
DATA = ["--data", "synthetic:16", "--max-images", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    card = ModelCard("resnet_mini", CLASS_NAMES, image_size=(64, 64))
    run = tmp_path_factory.mktemp("runs") / "demo"
    save_checkpoint(run / "checkpoints" / "best.pt", card.build().eval(), card)
    export(run, ExportOptions())
    (run / "export" / "model.engine").write_bytes(b"not an engine")  # an engine this machine cannot run
    return run


def test_exports_give_one_row_per_format(run_dir: Path) -> None:
    rows = evaluate_formats([run_dir], "synthetic:16", max_images=6, device="cpu", with_exports=True)
    assert [r.format for r in rows] == ["torch", "onnx fp32", "tensorrt"]
    torch_row, onnx_row, engine_row = rows
    assert torch_row.result.images == onnx_row.result.images > 0
    assert abs(torch_row.result.miou - onnx_row.result.miou) < 1e-3
    assert engine_row.result is None and engine_row.error
    assert onnx_row.size_mb > 0 and onnx_row.provider == "CPU"


def test_cli_table_and_json(run_dir: Path) -> None:
    onnx = run_dir / "export" / "model.onnx"
    result = CliRunner().invoke(app, ["eval", str(run_dir), str(onnx), *DATA])
    assert result.exit_code == 0, result.output
    for text in ("torch", "onnx fp32", "mIoU", "Δ mIoU", "+0.0000"):
        assert text in result.output
    result = CliRunner().invoke(app, ["eval", str(run_dir), "--exports", "--json", *DATA])
    assert result.exit_code == 0, result.output
    formats = json.loads(result.output)["formats"]
    assert [f["format"] for f in formats] == ["torch", "onnx fp32", "tensorrt"]
    assert formats[1]["miou"] is not None and formats[2]["miou"] is None and formats[2]["error"]


def test_python_api(run_dir: Path) -> None:
    rows = twdeploy.val(run_dir, run_dir / "export" / "model.onnx", data="synthetic:16", max_images=4, device="cpu")
    assert [r.format for r in rows] == ["torch", "onnx fp32"] and rows[1].to_dict()["images"] == 4


def test_nothing_evaluable_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"x")
    with pytest.raises(TwdeployError, match="no model could be evaluated"):
        evaluate_formats([bad, tmp_path / "missing.onnx"], "synthetic:8")
    assert format_name(bad) == "onnx"
