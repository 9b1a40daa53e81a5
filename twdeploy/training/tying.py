"""How the optimiser sees the tied decoder weights (method.md 1.3).

``separate`` (the reference): every conv/linear weight gets an alias ``nn.Parameter`` sharing
its storage; the decoder reads the alias, so the encoder-path and decoder-path gradients land
on two leaves and AdamW keeps separate moments for them, updating the same memory twice.
``summed``: the decoder reads the encoder weight itself, and autograd sums the two halves.
"""

from __future__ import annotations

from torch import nn

from twdeploy.training.config import TIE_MODES


def decoder_aliases(model: nn.Module, tie: str) -> dict[nn.Module, nn.Parameter]:
    """Alias parameters keyed by layer for ``separate`` (empty for ``summed``); create after ``.to(device)``."""
    if tie not in TIE_MODES:
        raise ValueError(f"tie must be one of {TIE_MODES}, got {tie!r}")
    if tie == "summed":
        return {}
    return {
        m: nn.Parameter(m.weight.data) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
