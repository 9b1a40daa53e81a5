"""The backend interface: a model file in, ``infer(batch) -> Outputs(logits, heatmaps, class_ids, mask)`` out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.segmenter import masks_from_heatmaps


class Outputs(NamedTuple):
    """One batch's outputs; what a model does not output is None.

    ``logits (N, K)``; ``heatmaps (N, K', H, W)`` float32; ``class_ids (N, K')`` (None when
    K' = K, all classes); ``mask (N, H, W)`` class ids, from a graph exported with the argmax inside.
    """

    logits: np.ndarray
    heatmaps: np.ndarray | None
    class_ids: np.ndarray | None = None
    mask: np.ndarray | None = None

    def masks(self) -> np.ndarray:
        """Class-id masks ``(N, H, W)`` int64: the graph's own mask, else the argmax of the heatmaps."""
        if self.mask is not None:
            return self.mask.astype(np.int64, copy=False)
        if self.heatmaps is None:
            raise ValueError("outputs have neither a mask nor heatmaps")
        ids = None if self.class_ids is None else torch.from_numpy(self.class_ids)
        return masks_from_heatmaps(torch.from_numpy(self.heatmaps), ids).numpy()


BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt", "triton")
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth"})
RUN_EXPORTS = ("export/model.onnx", "export/model.fp16.onnx", "export/model.engine", "export/model.fp16.engine")
"""Where ``twdeploy export`` leaves a run's artefacts, float32 and float16."""


def run_exports(run: str | Path) -> list[Path]:
    """The exported models inside a run folder that exist (none for a file)."""
    path = Path(run)
    return [path / rel for rel in RUN_EXPORTS if path.is_dir() and (path / rel).is_file()]


class Backend(Protocol):
    """One loaded model on one runtime; ``provider`` names what actually runs it."""

    card: ModelCard
    name: str
    device: str
    provider: str

    def infer(self, batch: np.ndarray) -> Outputs:
        """Run a float32 ``(N, 3, H, W)`` batch; any N (split or padded to the model's batch limits)."""
        ...

    def close(self) -> None:
        """Release the session / engine / model."""
        ...


def is_triton_url(model: str | Path) -> bool:
    """``triton://...``, ``triton+grpc://...`` or another ``triton*://`` scheme (the triton backend checks it)."""
    scheme, sep, _ = str(model).partition("://")
    return isinstance(model, str) and bool(sep) and scheme.lower().startswith("triton")


def detect_backend(model: str | Path) -> str:
    """Backend for ``model``: run folder or .pt -> torch, .onnx -> onnxruntime, .engine -> tensorrt, URL -> triton."""
    if is_triton_url(model):
        return "triton"
    path = Path(model)
    if path.is_dir():
        return "torch"
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "torch"
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    if not path.exists():
        raise TwdeployError(f"{path}: no such file or run folder; check the path")
    raise TwdeployError(
        f"{path}: cannot tell what kind of model this is from '{suffix or path.name}': "
        "pass a run folder, a .pt checkpoint, an .onnx file, a TensorRT .engine or a triton://HOST:PORT/NAME URL"
    )


def check_model_kind(model: str | Path, backend: str) -> Path:
    """``model`` as a Path; a one-line error when it does not exist or is the wrong kind for ``backend``."""
    if is_triton_url(model):
        raise TwdeployError(f"{model}: a Triton URL runs on the triton backend; use --backend triton (or auto)")
    path = Path(model)
    if not path.exists():
        raise TwdeployError(f"{path}: no such file or run folder; check the path")
    found = detect_backend(path)
    if found != backend:
        wants = {"torch": "a run folder or .pt checkpoint", "onnxruntime": "an .onnx file", "tensorrt": "an .engine"}
        raise TwdeployError(
            f"{path}: the {backend} backend needs {wants[backend]}; use --backend {found} (or auto) for this file"
        )
    return path


def run_in_chunks(run: Callable[[np.ndarray], Outputs], batch: np.ndarray, low: int, high: int | None) -> Outputs:
    """Call ``run`` on chunks of at most ``high`` images, zero-padding any chunk below ``low`` images."""
    n = batch.shape[0]
    if low <= n and (high is None or n <= high):
        return run(batch)
    step = high or n
    parts: list[Outputs] = []
    for start in range(0, n, step):
        chunk = batch[start : start + step]
        count = chunk.shape[0]
        if count < low:
            pad = np.zeros((low - count, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        parts.append(Outputs(*(None if t is None else t[:count] for t in run(chunk))))
    return Outputs(*(None if ts[0] is None else np.concatenate(ts) for ts in zip(*parts, strict=True)))
