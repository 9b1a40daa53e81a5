"""``export --outputs mask``: ArgMax (and the TopK selection) inside the graph, verified against torch, consumed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from tests.inference.tiny_model import IMAGE_SIZE, write_mixed_folder
from twdeploy.cli.app import app
from twdeploy.data.synthetic import CLASS_NAMES
from twdeploy.errors import TwdeployError
from twdeploy.export.compare import FP32, judge
from twdeploy.export.lint import lint_model
from twdeploy.export.pipeline import ExportOptions, export
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import read_onnx_card
from twdeploy.model.io import save_checkpoint
from twdeploy.runtime import open_backend

pytest.importorskip("onnxruntime")
CARD = ModelCard("resnet_mini", CLASS_NAMES, image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo"
    save_checkpoint(run / "checkpoints" / "best.pt", CARD.build().eval(), CARD)
    return run


def _graph(path: Path) -> onnx.ModelProto:
    return onnx.load(path, load_external_data=False)


@pytest.mark.parametrize(
    ("outputs", "topk", "mask_dtype", "names"),
    [
        (("mask",), None, "int32", ["logits", "mask"]),
        (("mask",), 1, "uint8", ["logits", "class_ids", "mask"]),
        (("mask", "heatmaps"), None, "int32", ["logits", "heatmaps", "mask"]),
    ],
)
def test_mask_in_graph_is_verified_against_torch_and_lint_clean(
    run_dir: Path, tmp_path: Path, outputs: tuple[str, ...], topk: int | None, mask_dtype: str, names: list[str]
) -> None:
    report = export(run_dir, ExportOptions(out=tmp_path, outputs=outputs, topk=topk, mask_dtype=mask_dtype))
    assert report.passed
    checks = {c.name: c for c in report.artifacts[0].verification.checks}
    assert checks["masks"].value >= 99.5 and ("heatmaps" in checks) == ("heatmaps" in outputs)
    path = tmp_path / "model.onnx"
    graph = _graph(path)
    assert [o.name for o in graph.graph.output] == names
    mask = next(o for o in graph.graph.output if o.name == "mask")
    elem = onnx.TensorProto.INT32 if mask_dtype == "int32" else onnx.TensorProto.UINT8
    assert mask.type.tensor_type.elem_type == elem
    ops = {n.op_type for n in graph.graph.node}
    assert "ArgMax" in ops and ("TopK" in ops) == (topk is not None)
    assert not [f for f in lint_model(graph) if f.severity == "error"]
    card = read_onnx_card(path)
    assert card.outputs == tuple(o for o in ("heatmaps", "mask") if o in outputs)
    assert json.loads({p.key: p.value for p in graph.metadata_props}["twdeploy.outputs"]) == names
    settings = json.loads((tmp_path / "export_report.json").read_text())["settings"]
    assert settings["outputs"] == names and settings["mask_dtype"] == mask_dtype


def test_runtime_masks_equal_the_torch_argmax(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, ExportOptions(out=tmp_path, outputs=("mask",)))
    batch = np.random.default_rng(0).random((3, 3, *IMAGE_SIZE), dtype=np.float32)
    torch_out = open_backend(run_dir, device="cpu").infer(batch)
    ort = open_backend(tmp_path / "model.onnx")
    out = ort.infer(batch)
    assert out.heatmaps is None and out.mask.dtype == np.int32 and out.mask.shape == (3, *IMAGE_SIZE)
    assert (out.masks() == torch_out.masks()).mean() > 0.995
    reference = {"logits": torch_out.logits, "heatmaps": torch_out.heatmaps}
    metrics, checks = judge(reference, {"logits": out.logits, "mask": out.mask}, FP32)
    assert "heatmaps_rel_l2" not in metrics and all(c.passed for c in checks)


def test_segment_and_eval_consume_a_mask_model(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, ExportOptions(out=tmp_path / "export", outputs=("mask",), topk=1))
    model = tmp_path / "export" / "model.onnx"
    write_mixed_folder(tmp_path / "images")
    out = tmp_path / "seg"
    result = CliRunner().invoke(app, ["segment", str(model), str(tmp_path / "images"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list((out / "masks").rglob("*.png"))) == 4
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert abs(sum(c["fraction"] for c in record["classes"]) - 1) < 1e-5
    refused = CliRunner().invoke(app, ["segment", str(model), str(tmp_path / "images"), "--save", "heatmaps"])
    assert refused.exit_code != 0 and "--outputs mask,heatmaps" in str(refused.exception)
    table = CliRunner().invoke(app, ["eval", str(model), "--data", "synthetic:8", "--max-images", "4"])
    assert table.exit_code == 0, table.output
    assert "mIoU" in table.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"outputs": ("probabilities",)}, "--outputs"),
        ({"outputs": ("mask",), "mask_dtype": "int8"}, "--mask-dtype int8"),
    ],
)
def test_bad_output_options_are_one_line_errors(run_dir: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(TwdeployError, match=message) as info:
        export(run_dir, ExportOptions(out=tmp_path, **options))
    assert "\n" not in str(info.value)


def test_cli_outputs_flag(run_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", str(run_dir), "--out", str(tmp_path), "--outputs", "mask", "--classes", "background,disc"]
    )
    assert result.exit_code == 0, result.output
    card = read_onnx_card(tmp_path / "model.onnx")
    assert card.outputs == ("mask",) and card.classes == (0, 1)


@pytest.mark.gpu
@pytest.mark.parametrize("mask_dtype", ["int32", "uint8"])
def test_tensorrt_engine_with_the_mask_inside(run_dir: Path, tmp_path: Path, mask_dtype: str) -> None:
    import torch

    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        pytest.skip("needs tensorrt and a CUDA GPU")
    options = ExportOptions(out=tmp_path, outputs=("mask",), topk=1, mask_dtype=mask_dtype, trt=True)
    report = export(run_dir, options)
    assert report.passed and report.artifacts[-1].kind.startswith("tensorrt")
    engine = open_backend(tmp_path / "model.engine")
    out = engine.infer(np.random.default_rng(0).random((2, 3, *IMAGE_SIZE), dtype=np.float32))
    assert out.heatmaps is None and out.mask.shape == (2, *IMAGE_SIZE) and out.mask.dtype == np.dtype(mask_dtype)
