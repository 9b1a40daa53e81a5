"""``summarize``: the card, size, GFLOPs and I/O of a run folder and of its ONNX export agree."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.inference.tiny_model import CLASS_NAMES, IMAGE_SIZE, build_run
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.model.summary import summarize


def test_run_and_onnx_describe_the_same_model(tmp_path):
    run, onnx_path = build_run(tmp_path, topk=1)
    of_run, of_onnx = summarize(run), summarize(onnx_path)
    assert of_run.card == of_onnx.card and of_run.card.topk == 1
    assert of_run.parameters == of_onnx.parameters == sum(p.numel() for p in of_run.card.build().parameters())
    assert of_run.gflops == pytest.approx(of_onnx.gflops) and of_run.gflops > 0
    assert [name for name, _, _ in of_onnx.outputs] == ["logits", "heatmaps", "class_ids"]
    assert of_onnx.inputs == [("images", "float32", ("batch", 3, *IMAGE_SIZE))]
    assert ("heatmaps", "float32", ("batch", 2, *IMAGE_SIZE)) in of_onnx.outputs
    text = CliRunner().invoke(app, ["info", str(onnx_path)]).output
    assert "resnet_mini" in text and ", ".join(CLASS_NAMES) in text and "class_ids" in text


def test_a_missing_model_is_one_line(tmp_path):
    with pytest.raises(TwdeployError, match="no such file"):
        summarize(tmp_path / "nope.onnx")
