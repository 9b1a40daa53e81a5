"""``twdeploy export`` end to end on a freshly saved checkpoint, ``--check``, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from twdeploy.cli.app import app
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import read_onnx_card
from twdeploy.model.io import save_checkpoint

CARD = ModelCard("resnet_mini", ("background", "a", "b", "c"), image_size=(64, 64))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo"
    save_checkpoint(run / "checkpoints" / "best.pt", CARD.build().eval(), CARD)
    return run


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from twdeploy.cli.app import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_export_writes_verified_model_and_report(run_dir):
    result = CliRunner().invoke(app, ["export", str(run_dir), "--topk", "2", "--batch", "2"])
    assert result.exit_code == 0, result.output
    out = run_dir / "export"
    assert read_onnx_card(out / "model.onnx") == CARD.with_selection(topk=2)
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] and report["lint"] == []
    assert report["artifacts"][0]["verification"]["checks"]
    assert "twdeploy segment" in result.output and "twdeploy benchmark" in result.output


def test_trt_without_tensorrt_is_one_line_after_onnx(run_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    result = _cli("export", str(run_dir), "--out", str(tmp_path), "--classes", "0,2", "--trt")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "tensorrt package" in result.stderr
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "export_report.json").is_file()


def test_check_names_offending_nodes(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
            helper.make_node("MaxUnpool", ["y", "idx"], ["z"], kernel_shape=[2, 2], strides=[2, 2], name="unpool"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "bad.onnx")
    result = CliRunner().invoke(app, ["export", "--check", str(tmp_path / "bad.onnx")])
    assert result.exit_code == 1
    assert "pool (MaxPool)" in result.output and "unpool (MaxUnpool)" in result.output


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.pt", "no such file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "has no checkpoints"),
        (lambda p: (p / "bad.pt").write_bytes(b"junk") and p / "bad.pt", "not a readable checkpoint"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, make, message):
    result = _cli("export", str(make(tmp_path)))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_unwritable_output_is_one_line_error(run_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _cli("export", str(run_dir), "--out", str(blocker / "sub"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"lies under the file {blocker}" in result.stderr


def test_bad_options_are_one_line_errors(run_dir):
    for args, message in ((["--batch", "4,2,8"], "min <= opt <= max"), (["--topk", "1", "--classes", "1"], "--topk")):
        result = _cli("export", str(run_dir), *args)
        assert result.returncode == 1 and message in result.stderr
