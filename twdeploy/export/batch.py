"""Batch sizes of an export: the TensorRT optimization profile and the verification batch."""

from __future__ import annotations

from dataclasses import dataclass

from twdeploy.errors import TwdeployError


@dataclass(frozen=True)
class BatchProfile:
    """``min <= opt <= max`` batch sizes; the ONNX batch axis is dynamic whatever they are."""

    min: int = 1
    opt: int = 1
    max: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise TwdeployError(f"batch sizes {self.min},{self.opt},{self.max} must satisfy 1 <= min <= opt <= max")


def parse_batch(text: str) -> BatchProfile:
    """``"B"`` -> profile (1, B, B); ``"min,opt,max"`` -> that profile."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise TwdeployError(f"--batch {text!r}: give one integer (8) or min,opt,max (1,4,8)") from None
    if len(values) == 1:
        return BatchProfile(1, values[0], values[0])
    if len(values) != 3:
        raise TwdeployError(f"--batch {text!r}: give one integer (8) or three (min,opt,max), not {len(values)}")
    return BatchProfile(*values)
