"""TensorRT engines: built and checked against ONNX Runtime where tensorrt and CUDA exist."""

from __future__ import annotations

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.export import tensorrt as trt_export
from twdeploy.model.card_files import read_engine_card


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_tensorrt() and torch.cuda.is_available(), reason="tensorrt and CUDA are present")
def test_require_names_what_is_missing():
    with pytest.raises(TwdeployError, match=r"tensorrt package|NVIDIA GPU") as info:
        trt_export.require()
    assert "\n" not in str(info.value)


@pytest.mark.gpu
@pytest.mark.skipif(not (_has_tensorrt() and torch.cuda.is_available()), reason="needs tensorrt and a CUDA GPU")
@pytest.mark.parametrize("half", [False, True])
def test_engine_matches_onnxruntime(tmp_path, half):
    from twdeploy.export.batch import BatchProfile
    from twdeploy.export.pipeline import ExportOptions, export
    from twdeploy.model.card import ModelCard
    from twdeploy.model.io import save_checkpoint

    card = ModelCard("resnet_mini", ("background", "a", "b"), image_size=(64, 64))
    save_checkpoint(tmp_path / "m.pt", card.build().eval(), card)
    options = ExportOptions(out=tmp_path / "out", topk=1, batch=BatchProfile(1, 2, 4), half=half, trt=True)
    report = export(tmp_path / "m.pt", options)
    engine = report.artifacts[-1]
    assert engine.kind.startswith("tensorrt") and engine.verification and engine.verification.passed
    assert read_engine_card(engine.path) == card.with_selection(topk=1)
