"""ONNX Runtime inference: TensorRT EP > CUDA EP > CPU, whichever are present; reports what loaded."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from twdeploy.errors import TwdeployError
from twdeploy.model.card_files import read_onnx_card
from twdeploy.runtime.base import Outputs, check_model_kind, run_in_chunks

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {"TensorrtExecutionProvider": "TensorRT EP", "CUDAExecutionProvider": "CUDA EP", "CPUExecutionProvider": "CPU"}


def import_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise TwdeployError(
            "onnxruntime is not installed: pip install 'twdeploy[cpu]' (or 'twdeploy[gpu]' on an NVIDIA machine)"
        ) from None
    return onnxruntime


def choose_providers(available: list[str], device: str) -> list[str]:
    """Providers to request, best first; ``cpu`` keeps to the CPU provider."""
    wanted = ("CPUExecutionProvider",) if device == "cpu" else PROVIDER_ORDER
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


class OnnxRuntimeBackend:
    """An ``InferenceSession`` over an exported ``.onnx``; static batch sizes are split / padded."""

    name = "onnxruntime"

    def __init__(self, model: str | Path, device: str = "auto", threads: int | None = None) -> None:
        path = self.path = check_model_kind(model, "onnxruntime")
        ort = import_onnxruntime()
        if device.startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TwdeployError(
                f"--device {device}: this onnxruntime has no CUDA provider; install onnxruntime-gpu "
                "(pip install 'twdeploy[gpu]') or use --device cpu"
            )
        self.card = read_onnx_card(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        requested = choose_providers(ort.get_available_providers(), device)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=requested)
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TwdeployError(f"{path}: ONNX Runtime cannot load this model ({first[:200]}); re-export it") from None
        self.providers = self.session.get_providers()
        self.provider = " > ".join(_SHORT.get(p, p) for p in self.providers)
        self.device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self.output_names = [o.name for o in self.session.get_outputs()]
        image_input = self.session.get_inputs()[0]  # the one input, whatever the exporter named it
        self.input_name = image_input.name
        self.input_dtype = np.float16 if image_input.type == "tensor(float16)" else np.float32
        static = image_input.shape[0]
        self.static_batch = static if isinstance(static, int) and static > 0 else None

    def _run(self, batch: np.ndarray) -> Outputs:
        feed = {self.input_name: batch.astype(self.input_dtype, copy=False)}
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        heatmaps = out.get("heatmaps")
        return Outputs(
            out["logits"].astype(np.float32),
            None if heatmaps is None else heatmaps.astype(np.float32),
            out.get("class_ids"),
            out.get("mask"),
        )

    def infer(self, batch: np.ndarray) -> Outputs:
        fixed = self.static_batch
        return run_in_chunks(self._run, np.ascontiguousarray(batch, np.float32), fixed or 1, fixed)

    def close(self) -> None:
        self.session = None
