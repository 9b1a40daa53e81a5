"""The one device resolver: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` -> a usable ``torch.device``."""

from __future__ import annotations

import re

import torch

from twdeploy.errors import TwdeployError

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
"""What every ``--device`` accepts."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; a one-line error for an unknown or absent device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TwdeployError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise TwdeployError(f"--device {name}: only cpu and cuda (cuda:N) are supported")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TwdeployError(f"--device {name}: no CUDA device is visible (torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise TwdeployError(f"--device {name}: only {count} CUDA device(s) here; use cuda:0..cuda:{count - 1}")
    return dev
