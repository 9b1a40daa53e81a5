"""Checkpoint files and run folders: atomic writes, one-line errors on bad input.

A checkpoint is ``torch.save`` of ``{"format", "card", "model", "training"?}``; a run folder
``runs/<name>/`` keeps them under ``checkpoints/`` (``best.pt`` preferred, else ``last.pt``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.segmenter import Segmenter

CHECKPOINT_FORMAT = "twdeploy-checkpoint/1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically and durably (see :mod:`twdeploy.atomic`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic.write_bytes(path, buffer.getvalue(), durable=True)


def save_checkpoint(
    path: Path, model: Segmenter, card: ModelCard, training: dict[str, Any] | None = None
) -> None:
    """Write a checkpoint atomically; ``training`` holds optimiser/step state for resuming."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "card": card.to_dict(),
        "model": model.state_dict(),
    }
    if training is not None:
        payload["training"] = training
    atomic_save(payload, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            for name in CHECKPOINT_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise TwdeployError(
            f"{path}: run folder has no checkpoints/best.pt or last.pt; train it first (twdeploy train)"
        )
    if not path.exists():
        raise TwdeployError(f"{path}: no such file or run folder; check the path")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint's payload (tensors on the CPU)."""
    file = resolve_checkpoint(path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
        raise TwdeployError(
            f"{file}: not a readable checkpoint ({type(exc).__name__}); re-export or retrain"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TwdeployError(
            f"{file}: not a twdeploy checkpoint; pass a run folder or a .pt written by twdeploy train"
        )
    return payload


def load_model(
    path: str | Path, class_chunk: int | None = None, fold_bn: bool = True
) -> tuple[Segmenter, ModelCard]:
    """Rebuild the segmenter of a checkpoint or run folder, in eval mode.

    ``fold_bn`` merges batch norms into their convs (canonical LRP, :func:`fold_batchnorm`).
    """
    payload = read_checkpoint(path)
    card = ModelCard.from_dict(payload["card"])
    model = card.build(class_chunk)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise TwdeployError(f"{resolve_checkpoint(path)}: weights do not fit {card.arch} ({first})") from None
    return (fold_batchnorm(model) if fold_bn else model.eval()), card
