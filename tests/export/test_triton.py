"""Triton model repositories: config parsed with Triton's own schema and checked against the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tests.inference.tiny_model import CLASS_NAMES, build_run
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.export.triton import TritonOptions, parse_config, write_repository
from twdeploy.model.card import ModelCard

pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import model_config_pb2 as pb


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("triton"), topk=1)


def _read(folder: Path):
    return parse_config((folder / "config.pbtxt").read_text())


def test_repository_matches_the_graph(exported, tmp_path):
    _, onnx_path = exported
    folder = write_repository(tmp_path / "repo", onnx_path, TritonOptions(name="tiny", max_batch_size=4))
    assert folder == tmp_path / "repo" / "tiny"
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    config = _read(folder)
    assert config.name == "tiny" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": pb.TYPE_FP32, "tensor(int64)": pb.TYPE_INT64}
    for declared, actual in ((config.input, session.get_inputs()), (config.output, session.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for t, a in zip(declared, actual, strict=True):
            assert list(t.dims) == list(a.shape[1:]) and t.data_type == types[a.type]
    assert [o.name for o in config.output] == ["logits", "heatmaps", "class_ids"]
    assert config.output[0].label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text().splitlines() == list(CLASS_NAMES)
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 2, 4]
    assert config.instance_group[0].count == 1 and config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_AUTO
    card = ModelCard.from_json(config.parameters["twdeploy.card"].string_value)
    assert card.class_names == CLASS_NAMES and card.topk == 1
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_engine_and_accelerator_settings(exported, tmp_path):
    _, onnx_path = exported
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized plan")
    options = TritonOptions(name="tiny trt", max_batch_size=2, instances=2, kind="gpu", trt_accelerator=True)
    folder = write_repository(tmp_path / "repo", engine, options, onnx_path)
    config = _read(folder)
    assert folder.name == "tiny_trt" and config.platform == "tensorrt_plan"
    assert (folder / "1" / "model.plan").read_bytes() == b"serialized plan"
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU and config.instance_group[0].count == 2
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator  # only for ONNX models
    onnx_folder = write_repository(tmp_path / "repo", onnx_path, TritonOptions(name="x", trt_accelerator=True))
    accelerator = _read(onnx_folder).optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"


def test_rewrite_replaces_the_model_whole(exported, tmp_path):
    _, onnx_path = exported
    repo = tmp_path / "repo"
    write_repository(repo, onnx_path, TritonOptions(name="m"))
    (repo / "m" / "stale.txt").write_text("old")
    write_repository(repo, onnx_path, TritonOptions(name="m", max_batch_size=16))
    assert not (repo / "m" / "stale.txt").exists() and _read(repo / "m").max_batch_size == 16
    assert sorted(p.name for p in repo.iterdir()) == ["m"]


def test_bad_inputs_are_one_line_errors(exported, tmp_path):
    run, onnx_path = exported
    with pytest.raises(TwdeployError, match="Triton serves"):
        write_repository(tmp_path, run / "checkpoints" / "best.pt", TritonOptions())
    with pytest.raises(TwdeployError, match="engine was built from"):
        write_repository(tmp_path, tmp_path / "m.engine", TritonOptions(), tmp_path / "m.engine")
    with pytest.raises(TwdeployError, match="instance kind"):
        TritonOptions(kind="tpu")
    with pytest.raises(TwdeployError, match="no usable characters"):
        write_repository(tmp_path, onnx_path, TritonOptions(name="///"))


def test_missing_tritonclient_names_the_extra(exported, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(TwdeployError, match=r"twdeploy\[triton\]"):
        write_repository(tmp_path, exported[1], TritonOptions())


def test_cli_export_writes_the_repository(exported, tmp_path):
    run, _ = exported
    repo = tmp_path / "repo"
    args = ["export", str(run), "--out", str(tmp_path / "export"), "--triton", str(repo), "--triton-instances", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = _read(repo / "run")
    assert config.max_batch_size == 8 and config.instance_group[0].count == 2
    assert (repo / "run" / "1" / "model.onnx").read_bytes() == (tmp_path / "export" / "model.onnx").read_bytes()
    assert "tritonserver --model-repository" in result.output
