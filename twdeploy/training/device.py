"""Device choice and bf16 autocast (CUDA only; the relevance divisions stay float32 in the model)."""

from __future__ import annotations

import contextlib

import torch

from twdeploy.errors import TwdeployError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if present else CPU; ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TwdeployError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise TwdeployError(f"--device {name!r} is unknown; use auto, cpu or cuda")
    return torch.device(name)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
