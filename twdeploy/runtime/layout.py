"""The memory layout eager PyTorch runs images in: channels-last for large images on the CPU.

On the CPU, oneDNN's transposed convolutions (most of the decoder's time) run faster on
channels-last tensors of large feature maps, and the relevance rules keep a channels-last
input's layout through every layer (``rules.channels_last``), so nothing is reordered on the
way. The result is the same up to float rounding. Small images stay NCHW: at 64 px
channels-last was slower for some backbones (docs/benchmarks.md). Traced exports do not pass
through here: their graphs are unchanged. ``TWDEPLOY_CHANNELS_LAST=0`` keeps NCHW throughout.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

VARIABLE = "TWDEPLOY_CHANNELS_LAST"
MIN_PIXELS = 256 * 256
"""Images of at least this many pixels run channels-last (the size where it measured faster for every backbone)."""


def channels_last_enabled(device: torch.device, height: int, width: int) -> bool:
    """Whether ``height`` x ``width`` images on ``device`` run channels-last."""
    return device.type == "cpu" and height * width >= MIN_PIXELS and os.environ.get(VARIABLE, "1") != "0"


def preferred_layout(images: Tensor) -> Tensor:
    """``images`` (N, C, H, W) in the layout they run fastest in (no copy when they already are)."""
    if images.dim() == 4 and channels_last_enabled(images.device, int(images.shape[2]), int(images.shape[3])):
        return images.contiguous(memory_format=torch.channels_last)
    return images


def describe(height: int, width: int) -> str:
    """One line for benchmark headers: the CPU layout of ``height`` x ``width`` images."""
    enabled = channels_last_enabled(torch.device("cpu"), height, width)
    setting = os.environ.get(VARIABLE, "unset")
    return f"CPU images {height}x{width} run {'channels-last' if enabled else 'NCHW'} ({VARIABLE}={setting})"


def rule() -> str:
    """The layout rule in force, for settings lines that do not know the image size."""
    if os.environ.get(VARIABLE, "1") == "0":
        return f"NCHW ({VARIABLE}=0)"
    side = int(MIN_PIXELS**0.5)
    return f"channels-last for CPU images of {side}x{side} px or more, else NCHW"
