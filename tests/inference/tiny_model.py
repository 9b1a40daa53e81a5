"""A freshly built tiny segmenter saved as a run folder and exported to ONNX, plus mixed input files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from twdeploy.export.onnx import save_onnx, to_onnx
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint

CLASS_NAMES = ("background", "disc", "square")
IMAGE_SIZE = (64, 64)


def build_run(root: Path, topk: int | None = None) -> tuple[Path, Path]:
    """A run folder with ``checkpoints/best.pt`` and its ONNX export ``export/model.onnx``."""
    card = ModelCard("resnet_mini", CLASS_NAMES, image_size=IMAGE_SIZE, topk=topk)
    torch.manual_seed(0)
    model = card.build().eval()
    run = root / "run"
    save_checkpoint(run / "checkpoints" / "best.pt", model, card)
    onnx_path = run / "export" / "model.onnx"
    save_onnx(to_onnx(model, card), onnx_path)
    return run, onnx_path


def write_mixed_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """Good images of several sizes plus a corrupt, an empty and a non-image file; returns good name -> (H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = {"a": (48, 80), "b": (100, 60), "sub/c": (64, 64), "d": (37, 53)}
    for name, (h, w) in good.items():
        path = folder / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return good


def write_clip(path: Path, frames: int, size: tuple[int, int] = (40, 56), fps: float = 10.0) -> Path:
    """A short MJPG/mp4v video of moving squares."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(frames):
        image = np.full((*size, 3), 30, np.uint8)
        cv2.rectangle(image, (2 + 3 * i, 5), (20 + 3 * i, 25), (0, 200, 255), -1)
        writer.write(image)
    writer.release()
    return path
