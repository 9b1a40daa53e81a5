"""Inference backends behind one interface: torch (run folders, checkpoints), ONNX Runtime, TensorRT, Triton.

``open_backend(model, "auto")`` picks the backend from the file: a run folder or ``.pt`` ->
torch, ``.onnx`` -> onnxruntime, ``.engine`` -> tensorrt; a ``triton://HOST:PORT/NAME``
(HTTP) or ``triton+grpc://HOST:PORT/NAME`` (gRPC) URL -> triton, a model on a Triton server.
"""

from __future__ import annotations

from pathlib import Path

from twdeploy.errors import TwdeployError
from twdeploy.runtime.base import BACKEND_NAMES, Backend, Outputs, detect_backend

__all__ = ["BACKEND_NAMES", "Backend", "Outputs", "detect_backend", "open_backend"]


def open_backend(
    model: str | Path,
    backend: str = "auto",
    device: str = "auto",
    half: bool = False,
    threads: int | None = None,
    max_memory: int | None = None,
) -> Backend:
    """Load ``model`` on ``backend`` (auto: from the file).

    ``half`` is torch-on-CUDA only, ``threads`` ORT only; ``max_memory`` (bytes) bounds the torch
    decoder's class chunks: an exported graph's chunks were fixed when it was exported.
    """
    kind = detect_backend(model) if backend == "auto" else backend
    if kind not in BACKEND_NAMES:
        raise TwdeployError(f"--backend {backend}: unknown backend; choose auto, {', '.join(BACKEND_NAMES)}")
    if half and kind != "torch":
        raise TwdeployError(f"--half applies to the torch backend; a {kind} model's precision is set at export")
    if max_memory is not None and kind != "torch":
        raise TwdeployError(
            f"--max-memory applies to the torch backend; a {kind} model's class chunks were fixed at export "
            "(twdeploy export --max-memory)"
        )
    if kind == "torch":
        from twdeploy.runtime.torch_backend import TorchBackend

        return TorchBackend(model, device, half, max_memory)
    if kind == "triton":
        from twdeploy.runtime.triton_backend import TritonBackend

        return TritonBackend(str(model), device)
    if kind == "onnxruntime":
        from twdeploy.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, device, threads)
    from twdeploy.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(model, device)
