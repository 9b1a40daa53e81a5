"""TensorRT engine built from the tiny model's ONNX export; runs only where tensorrt and CUDA exist."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference.tiny_model import IMAGE_SIZE, build_run
from twdeploy.runtime import open_backend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("tiny"))


def _build_engine(onnx_path: Path, engine: Path, max_batch: int) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    shape = (3, *IMAGE_SIZE)
    profile.set_shape("images", (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    card = open_backend(onnx_path).card.to_dict()
    engine.with_name(engine.name + ".json").write_text(json.dumps({"card": card}))


def test_tensorrt_matches_onnxruntime_and_splits_big_batches(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    _build_engine(tiny_run[1], engine, max_batch=2)
    trt_backend, ort_backend = open_backend(engine), open_backend(tiny_run[1], device="cpu")
    assert trt_backend.name == "tensorrt" and trt_backend.max_batch == 2
    batch = np.random.default_rng(0).random((5, 3, *IMAGE_SIZE), dtype=np.float32)
    t_logits, t_heat, *_ = trt_backend.infer(batch)
    o_logits, o_heat, *_ = ort_backend.infer(batch)
    assert t_heat.shape == o_heat.shape == (5, 3, *IMAGE_SIZE)
    np.testing.assert_allclose(t_logits, o_logits, rtol=1e-3, atol=1e-4)
    assert (t_heat.argmax(1) == o_heat.argmax(1)).mean() > 0.99
    trt_backend.close()
