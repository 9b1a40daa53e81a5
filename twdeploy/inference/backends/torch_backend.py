"""Eager PyTorch inference from a run folder or checkpoint, on the CPU or a CUDA device."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.inference.backends.base import Outputs, check_model_kind
from twdeploy.model.io import load_model, resolve_checkpoint


def torch_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; a one-line error for an unusable device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TwdeployError(f"--device {device}: unknown device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TwdeployError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise TwdeployError(f"--device {device}: only cpu and cuda are supported")
    return dev


class TorchBackend:
    """The segmenter itself; ``half`` runs it under CUDA float16 autocast."""

    name = "torch"

    def __init__(self, model: str | Path, device: str = "auto", half: bool = False) -> None:
        path = check_model_kind(model, "torch")
        self.dev = torch_device(device)
        if half and self.dev.type != "cuda":
            raise TwdeployError("--half needs a CUDA device (--device cuda); the CPU runs float32")
        self.model, self.card = load_model(path)
        self.model.to(self.dev)
        self.half = half
        self.device = str(self.dev)
        self.provider = f"torch {torch.__version__} ({self.device}{', fp16 autocast' if half else ''})"
        self.checkpoint = resolve_checkpoint(path)

    def infer(self, batch: np.ndarray) -> Outputs:
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.dev, non_blocking=True)
        autocast = torch.autocast("cuda", torch.float16) if self.half else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            outputs = self.model(x)
        logits, heatmaps = (t.float().cpu().numpy() for t in outputs[:2])
        return logits, heatmaps, outputs[2].cpu().numpy() if len(outputs) == 3 else None

    def close(self) -> None:
        self.model.cpu()
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
