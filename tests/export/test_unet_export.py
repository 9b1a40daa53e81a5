"""ONNX export of the U-Net baselines: TensorRT-clean graph, the common interface, ONNX Runtime parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twdeploy.export import compare
from twdeploy.export.inputs import sample_images
from twdeploy.export.lint import lint_model
from twdeploy.export.onnx import read_card, read_metadata, save_onnx, to_onnx
from twdeploy.export.verify import ort_runner, reference, torch_runner, verify_against
from twdeploy.model.card import ModelCard


@pytest.mark.parametrize(
    ("kind", "arch", "size"),
    [
        ("unet", "vgg_mini", 64),
        ("mtunet", "resnet_mini", 64),
        ("unet", "resnet18", 32),
        pytest.param("mtunet", "efficientnet_lite0", 32, marks=pytest.mark.slow),
        pytest.param("mtunet", "vgg16", 64, marks=pytest.mark.slow),
    ],
)
def test_unet_export_matches_torch_and_passes_lint(tmp_path, kind: str, arch: str, size: int) -> None:
    card = ModelCard(arch, ("background", "a", "b", "c"), image_size=(size, size), model=kind)
    torch.manual_seed(0)
    model = card.build().eval()
    proto = to_onnx(model, card)
    path = tmp_path / "model.onnx"
    save_onnx(proto, path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Resize", "Concat"} <= ops and not ops & {"MaxUnpool", "Col2Im", "ScatterND", "ConvTranspose"}
    assert lint_model(path) == []
    assert [o.name for o in proto.graph.output] == ["logits", "heatmaps"]
    assert read_card(path) == card and read_metadata(path)["twdeploy.model"] == kind
    images, _ = sample_images(card, 3)
    ref = reference("torch", torch_runner(model), images, 3)
    verification, outputs = verify_against("onnxruntime", ort_runner(path), ref, images, 3, compare.FP32)
    assert verification.passed, verification.checks
    assert verification.metrics["heatmaps_rel_l2"] < 1e-5 and verification.metrics["mask_agreement"] == 100.0
    assert outputs["heatmaps"].shape == (3, 4, size, size)
    if kind == "unet":  # no classifier: the logits are the score maps' spatial maxima
        np.testing.assert_allclose(outputs["logits"], outputs["heatmaps"].max(axis=(2, 3)), rtol=1e-6)
