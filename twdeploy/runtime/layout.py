"""The memory layout eager PyTorch runs images in: channels-last on the CPU, as given elsewhere.

On the CPU, oneDNN's transposed convolutions (most of the decoder's time) run faster on
channels-last tensors, and the relevance rules keep a channels-last input's layout through
every layer (``rules.channels_last``), so no tensor is reordered on the way. The result is the
same up to float rounding. Traced exports do not pass through here: their graphs are unchanged.
``TWDEPLOY_CHANNELS_LAST=0`` keeps the plain (NCHW) layout.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

VARIABLE = "TWDEPLOY_CHANNELS_LAST"


def channels_last_enabled(device: torch.device) -> bool:
    """Whether images on ``device`` are run channels-last: the CPU, unless ``TWDEPLOY_CHANNELS_LAST=0``."""
    return device.type == "cpu" and os.environ.get(VARIABLE, "1") != "0"


def preferred_layout(images: Tensor) -> Tensor:
    """``images`` (N, C, H, W) in the layout its device runs fastest (no copy when it already is)."""
    if images.dim() == 4 and channels_last_enabled(images.device):
        return images.contiguous(memory_format=torch.channels_last)
    return images


def describe() -> str:
    """One line for benchmark headers."""
    enabled = channels_last_enabled(torch.device("cpu"))
    return f"CPU images {'channels-last' if enabled else 'NCHW'} ({VARIABLE}={os.environ.get(VARIABLE, 'unset')})"
