"""Write held-out synthetic scenes as PNGs and a short video made from them (for scripts/demo.sh)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from twdeploy.data import SyntheticScenes


def write_samples(out: Path, images: int, frames: int, size: int) -> None:
    """``out/images/scene_XXX.png`` (test split) and ``out/video.mp4`` (scenes panning sideways)."""
    folder = out / "images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    scenes = SyntheticScenes(max(images, 4), image_size=size, split="test")
    for i in range(images):
        cv2.imwrite(str(folder / f"scene_{i:03d}.png"), scenes.scene(i).image[:, :, ::-1])
    strip = np.concatenate([scenes.scene(i).image[:, :, ::-1] for i in range(4)], axis=1)
    writer = cv2.VideoWriter(str(out / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (2 * size, size))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {out / 'video.mp4'}")
    for t in range(frames):
        x = round(t * (strip.shape[1] - 2 * size) / max(1, frames - 1))
        writer.write(np.ascontiguousarray(strip[:, x : x + 2 * size]))
    writer.release()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    write_samples(args.out, args.images, args.frames, args.size)
    print(f"wrote {args.images} scenes to {args.out / 'images'} and {args.frames} frames to {args.out / 'video.mp4'}")
