"""Checkpoint files and run folders: atomic writes, one-line errors on bad input.

A checkpoint is ``torch.save`` of ``{"format", "card", "model", "training"?}``; a run folder
``runs/<name>/`` keeps them under ``checkpoints/`` (``best.pt`` preferred, else ``last.pt``).
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard, SegmentationModel
from twdeploy.model.folding import for_inference
from twdeploy.model.registry import backbone_names

CHECKPOINT_FORMAT = "twdeploy-checkpoint/1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically and durably (see :mod:`twdeploy.atomic`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic.write_bytes(path, buffer.getvalue(), durable=True)


def save_checkpoint(
    path: Path, model: SegmentationModel, card: ModelCard, training: dict[str, Any] | None = None
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


def load_torch_file(file: Path, what: str, fix: str) -> Any:
    """``torch.load`` with weights only, on the CPU; a one-line error naming ``file`` and ``fix``."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
        raise TwdeployError(f"{file}: not a readable {what} ({type(exc).__name__}); {fix}") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint's payload (tensors on the CPU)."""
    file = resolve_checkpoint(path)
    if file.is_file() and file.stat().st_size == 0:
        raise TwdeployError(f"{file}: file is empty (an interrupted copy?); copy it again or retrain")
    payload = load_torch_file(file, "checkpoint", "re-export or retrain")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TwdeployError(
            f"{file}: not a twdeploy checkpoint; pass a run folder or a .pt written by twdeploy train"
        )
    return payload


def checkpoint_card(payload: dict[str, Any], file: Path) -> ModelCard:
    """The model card of a checkpoint payload; a one-line error when it is missing or unusable."""
    data = payload.get("card")
    if not isinstance(data, dict):
        raise TwdeployError(f"{file}: checkpoint has no model card; re-save it with twdeploy train")
    try:
        card = ModelCard.from_dict(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise TwdeployError(f"{file}: unusable model card ({exc}); upgrade twdeploy or retrain") from None
    if card.arch not in backbone_names():
        raise TwdeployError(
            f"{file}: unknown architecture {card.arch!r} in the model card; upgrade twdeploy or register it "
            f"with twdeploy.model.registry.register_backbone (this one knows {', '.join(backbone_names())})"
        )
    return card


def weights_arch(state: dict[str, Any], card: ModelCard) -> str | None:
    """The backbone whose parameter names and shapes match ``state`` (built on the meta device), if any."""
    shapes = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    for arch in backbone_names():
        with torch.device("meta"):
            candidate = replace(card, arch=arch).build().state_dict()
        if {k: tuple(v.shape) for k, v in candidate.items()} == shapes:
            return arch
    return None


def load_model(
    path: str | Path, class_chunk: int | None = None, fold_bn: bool = True, max_memory: int | None = None
) -> tuple[SegmentationModel, ModelCard]:
    """Rebuild the model (its card's kind) of a checkpoint or run folder, in eval mode.

    ``fold_bn`` merges a segmenter's batch norms into their convs (canonical LRP, ``fold_batchnorm``);
    ``class_chunk`` / ``max_memory`` bound its decoder memory (:class:`~twdeploy.model.segmenter.Segmenter`).
    """
    file = resolve_checkpoint(path)
    payload = read_checkpoint(file)
    card = checkpoint_card(payload, file)
    model = card.build(class_chunk, max_memory)
    state = payload.get("model")
    try:
        if not isinstance(state, dict):
            raise RuntimeError("no weights")
        model.load_state_dict(state)
    except RuntimeError:
        found = weights_arch(state, card) if isinstance(state, dict) else None
        held = f"weights of {found}" if found else "weights of no known architecture"
        raise TwdeployError(
            f"{file}: the card says {card.arch} with {card.num_classes} classes but the file holds {held}; "
            "the checkpoint was edited or mixed up: use the original or retrain"
        ) from None
    return (for_inference(model) if fold_bn else model.eval()), card
