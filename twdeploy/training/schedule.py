"""Learning-rate schedule: a short linear warm-up, then cosine decay to zero at the last step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

WARMUP_SHARE = 0.05
MAX_WARMUP = 200


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the base lr after ``step`` of ``total`` steps."""
    warmup = min(MAX_WARMUP, int(WARMUP_SHARE * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """Warm-up + cosine schedule over ``total_steps`` (stepped once per optimiser step)."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps))
