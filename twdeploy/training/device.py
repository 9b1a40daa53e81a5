"""Device choice and bf16 autocast (CUDA only; the relevance divisions stay float32 in the model)."""

from __future__ import annotations

import contextlib

import torch

from twdeploy.runtime.device import resolve_device

__all__ = ["autocast", "resolve_device"]


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
