"""Backends on a freshly built tiny model: torch and ONNX Runtime agree; wrong files give one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference.tiny_model import IMAGE_SIZE, build_run
from twdeploy.errors import TwdeployError
from twdeploy.inference.predictor import masks_at_original_size
from twdeploy.runtime import Outputs, allocator, detect_backend, open_backend
from twdeploy.runtime.base import run_in_chunks
from twdeploy.runtime.onnxruntime_backend import choose_providers


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("tiny"))


def _batch(n: int) -> np.ndarray:
    return np.random.default_rng(1).random((n, 3, *IMAGE_SIZE), dtype=np.float32)


def test_torch_and_onnxruntime_give_the_same_masks(tiny_run: tuple[Path, Path]) -> None:
    run, onnx_path = tiny_run
    torch_backend, ort_backend = open_backend(run, device="cpu"), open_backend(onnx_path)
    assert (torch_backend.name, ort_backend.name) == ("torch", "onnxruntime")
    assert ort_backend.provider == "CPU" and ort_backend.card == torch_backend.card
    batch = _batch(3)
    t_logits, t_heat, t_ids, t_mask = t_out = torch_backend.infer(batch)
    o_logits, o_heat, o_ids, o_mask = o_out = ort_backend.infer(batch)
    assert t_mask is None and o_mask is None
    assert t_ids is None and o_ids is None and t_heat.shape == (3, 3, *IMAGE_SIZE)
    np.testing.assert_allclose(o_logits, t_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(o_heat, t_heat, rtol=1e-3, atol=1e-3 * np.abs(t_heat).max())
    sizes = [(30, 50)] * 3
    for a, b in zip(
        masks_at_original_size(t_out, sizes), masks_at_original_size(o_out, sizes), strict=True
    ):
        assert a.shape == (30, 50)
        assert (a == b).mean() > 0.999  # argmax ties may flip on float noise
    torch_backend.close()
    ort_backend.close()


def test_torch_backend_releases_freed_memory_after_each_batch(
    tiny_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: calls.append(len(calls)) or True)
    backend = open_backend(tiny_run[0], device="cpu")
    for n in (1, 2):
        assert backend.infer(_batch(n)).heatmaps.shape[0] == n
    assert len(calls) == 2
    backend.close()


def test_topk_model_maps_heatmaps_to_class_ids(tmp_path: Path) -> None:
    run, onnx_path = build_run(tmp_path, topk=1)
    outputs = [open_backend(m, device="cpu").infer(_batch(2)) for m in (run, onnx_path)]
    for out in outputs:
        assert out.heatmaps.shape[1] == 2 and out.class_ids.shape == (2, 2) and (out.class_ids[:, 0] == 0).all()
    np.testing.assert_array_equal(outputs[0].class_ids, outputs[1].class_ids)
    masks = masks_at_original_size(outputs[0], [IMAGE_SIZE] * 2)
    for mask, ids in zip(masks, outputs[0][2], strict=True):
        assert set(np.unique(mask)) <= set(ids.tolist())


def test_run_in_chunks_splits_and_pads_to_the_batch_limits() -> None:
    seen: list[int] = []

    def run(batch: np.ndarray) -> Outputs:
        seen.append(batch.shape[0])
        return Outputs(batch.sum(axis=(1, 2, 3))[:, None], batch[:, :1])

    batch = _batch(5)
    logits, heatmaps, _, _ = run_in_chunks(run, batch, 2, 2)
    assert seen == [2, 2, 2] and logits.shape == (5, 1) and heatmaps.shape == (5, 1, *IMAGE_SIZE)
    np.testing.assert_allclose(logits[:, 0], batch.sum(axis=(1, 2, 3)), rtol=1e-6)
    seen.clear()
    run_in_chunks(run, batch, 1, None)
    assert seen == [5]


def test_provider_order_prefers_tensorrt_then_cuda() -> None:
    everything = [
        "CPUExecutionProvider",
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "AzureExecutionProvider",
    ]
    assert choose_providers(everything, "auto") == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers(everything, "cpu") == ["CPUExecutionProvider"]


def test_auto_backend_from_the_file(tmp_path: Path, tiny_run: tuple[Path, Path]) -> None:
    run, onnx_path = tiny_run
    assert detect_backend(run) == detect_backend(run / "checkpoints" / "best.pt") == "torch"
    assert detect_backend(onnx_path) == "onnxruntime"
    assert detect_backend(tmp_path / "model.engine") == "tensorrt"


@pytest.mark.parametrize(
    ("name", "content", "backend", "message"),
    [
        ("model.bin", b"x", "auto", "cannot tell what kind of model"),
        ("model.onnx", b"not onnx at all", "auto", "not a readable ONNX model"),
        ("model.pt", b"not a checkpoint", "auto", "not a readable checkpoint"),
        ("model.onnx", b"x", "torch", "use --backend onnxruntime"),
        ("missing.onnx", None, "auto", "no such file"),
    ],
)
def test_wrong_model_files_give_one_line_errors(
    tmp_path: Path, name: str, content: bytes | None, backend: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TwdeployError, match=message) as info:
        open_backend(path, backend)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_engine_without_tensorrt_says_how_to_install(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(TwdeployError, match=r"tensorrt is not installed: pip install 'twdeploy\[gpu\]'"):
        open_backend(engine)


def test_half_needs_cuda(tiny_run: tuple[Path, Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: --half is allowed here")
    with pytest.raises(TwdeployError, match="--half needs a CUDA device"):
        open_backend(tiny_run[0], device="cpu", half=True)
