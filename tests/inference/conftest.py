"""Helpers that write real images and videos to disk for the inference tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def write_video(path: Path, n_frames: int, size: tuple[int, int] = (48, 64), fps: float = 10.0) -> Path:
    """Write `n_frames` frames whose brightness encodes the frame number (frame i has value 20 * i)."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n_frames):
        writer.write(np.full((*size, 3), (20 * i) % 256, np.uint8))
    writer.release()
    return path


def colour_image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", 10)
