"""TensorRT's parser on the exported graph (``polygraphy inspect capability``), skipped with a reason elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from twdeploy.cli.app import app
from twdeploy.export.capability import Capability, inspect_capability, skip_reason
from twdeploy.export.pipeline import ExportOptions, export
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint

pytest.importorskip("onnxruntime")
CARD = ModelCard("resnet_mini", ("background", "a", "b"), image_size=(64, 64))
HERE = skip_reason()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo"
    save_checkpoint(run / "checkpoints" / "best.pt", CARD.build().eval(), CARD)
    export(run, ExportOptions(outputs=("mask",), topk=1))
    return run / "export"


def _custom_op_model(path: Path) -> Path:
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, path)
    return path


def test_the_report_records_the_verdict_or_why_it_was_skipped(exported: Path) -> None:
    report = json.loads((exported / "export_report.json").read_text())
    verdict = report["capability"]["model.onnx"]
    assert verdict["checked"] == (HERE is None)
    if HERE is not None:
        assert verdict["supported"] is None and verdict["reason"] == HERE
    else:
        assert verdict["supported"] is True and verdict["errors"] == []


@pytest.mark.skipif(HERE is None, reason="tensorrt and CUDA are present: the check runs")
def test_skipped_with_a_reason_without_tensorrt_or_cuda(exported: Path) -> None:
    verdict = inspect_capability(exported / "model.onnx")
    assert not verdict.checked and ("tensorrt" in verdict.reason or "CUDA" in verdict.reason)
    assert verdict.summary().startswith("TensorRT capability: skipped (")
    result = CliRunner().invoke(app, ["export", "--check", str(exported / "model.onnx")])
    assert result.exit_code == 0 and "TensorRT capability: skipped" in result.output


def test_summary_names_rejected_nodes() -> None:
    verdict = Capability(True, False, "TensorRT 10.9", [{"node": "n1", "op": "NoSuchOp", "message": "no importer"}])
    assert verdict.summary() == "TensorRT capability: 1 node(s) rejected by TensorRT 10.9: n1 (NoSuchOp): no importer"


@pytest.mark.gpu
@pytest.mark.skipif(HERE is not None, reason=HERE or "")
def test_tensorrt_parser_takes_the_export_and_rejects_an_unknown_op(exported: Path, tmp_path: Path) -> None:
    assert inspect_capability(exported / "model.onnx").supported
    verdict = inspect_capability(_custom_op_model(tmp_path / "bad.onnx"))
    assert verdict.checked and not verdict.supported and verdict.errors[0]["op"] == "NoSuchOp"
    assert CliRunner().invoke(app, ["export", "--check", str(tmp_path / "bad.onnx")]).exit_code == 1
