"""Eager PyTorch inference from a run folder, a checkpoint or an in-memory segmenter, on the CPU or CUDA."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.io import load_model
from twdeploy.model.segmenter import Segmenter
from twdeploy.runtime import allocator
from twdeploy.runtime.base import Outputs, check_model_kind
from twdeploy.runtime.device import resolve_device
from twdeploy.runtime.layout import preferred_layout


class TorchBackend:
    """The segmenter itself; ``half`` runs it under CUDA float16 autocast, ``max_memory`` bounds its decoder.

    Images run in :func:`~twdeploy.runtime.layout.preferred_layout` (channels-last for large CPU images).
    """

    name = "torch"

    def __init__(
        self, model: str | Path, device: str = "auto", half: bool = False, max_memory: int | None = None
    ) -> None:
        path = check_model_kind(model, "torch")
        segmenter, card = load_model(path, max_memory=max_memory)
        self._setup(segmenter, card, device, half)

    @classmethod
    def from_segmenter(cls, model: Segmenter, card: ModelCard, device: str = "cpu") -> TorchBackend:
        """Wrap a segmenter already in memory (export verification's reference)."""
        backend = cls.__new__(cls)
        backend._setup(model.eval(), card, device, False)
        return backend

    def _setup(self, model: Segmenter, card: ModelCard, device: str, half: bool) -> None:
        self.dev = resolve_device(device)
        if half and self.dev.type != "cuda":
            raise TwdeployError("--half needs a CUDA device (--device cuda); the CPU runs float32")
        self.model, self.card, self.half = model.to(self.dev), card, half
        self.device = str(self.dev)
        self.provider = f"torch {torch.__version__} ({self.device}{', fp16 autocast' if half else ''})"

    def infer(self, batch: np.ndarray) -> Outputs:
        x = preferred_layout(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.dev, non_blocking=True))
        autocast = torch.autocast("cuda", torch.float16) if self.half else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            outputs = self.model(x)
        allocator.release_freed_memory()  # the pass's temporaries are freed; its outputs stay
        logits, heatmaps = (t.float().cpu().numpy() for t in outputs[:2])
        return Outputs(logits, heatmaps, outputs[2].cpu().numpy() if len(outputs) == 3 else None)

    def close(self) -> None:
        self.model.cpu()
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
