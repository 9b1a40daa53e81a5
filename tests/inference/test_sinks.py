"""SegmentWriter writes real files: palette PNGs, overlays, heatmaps, videos, results.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.inference.conftest import colour_image, write_video
from twdeploy.atomic import write_bytes as atomic_write_bytes
from twdeploy.errors import TwdeployError
from twdeploy.inference.render import resize_mask
from twdeploy.inference.sinks import SegmentWriter, default_save, next_run_dir
from twdeploy.inference.sources import Frame, open_source

NAMES = ["background", "aeroplane", "bicycle", "bird"]


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp" or ".partial." in p.name]


def _frame(name: str = "sub/pic", h: int = 37, w: int = 53) -> Frame:
    return Frame(colour_image(h, w), name, f"/data/{name}.jpg", "image", 0, 1.5)


def _model_mask(seed: int = 0) -> np.ndarray:
    """A model-size (16 x 16) prediction with ids 0..3."""
    return np.random.default_rng(seed).integers(0, 4, (16, 16))


def test_palette_png_round_trip_at_original_size(tmp_path: Path) -> None:
    frame = _frame()
    mask = resize_mask(_model_mask(), frame.size)
    with SegmentWriter(tmp_path, NAMES, save={"mask"}) as writer:
        writer.write(frame, mask)
    png = Image.open(tmp_path / "masks" / "sub" / "pic.png")
    assert png.mode == "P" and png.size == (53, 37)
    np.testing.assert_array_equal(np.array(png), mask)
    assert png.getpalette()[3:6] == [128, 0, 0]
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "overlays").exists()


def test_overlay_and_heatmaps_at_original_size(tmp_path: Path) -> None:
    frame = _frame("pic")
    mask = resize_mask(_model_mask(), frame.size)
    heatmaps = np.stack([np.full((16, 16), v, np.float32) for v in (1.0, -1.0, 0.5)])
    with SegmentWriter(tmp_path, NAMES, save={"overlay", "heatmaps"}, classes=[1, 3]) as writer:
        writer.write(frame, mask, heatmaps, class_ids=[1, 2, 3])
    shown = cv2.imread(str(tmp_path / "overlays" / "pic.jpg"))
    assert shown.shape == frame.image.shape
    files = sorted(p.name for p in (tmp_path / "heatmaps" / "pic").iterdir())
    assert files == ["1_aeroplane.png", "3_bird.png"]  # class 2 filtered out
    red = cv2.imread(str(tmp_path / "heatmaps" / "pic" / "1_aeroplane.png"))
    assert red.shape == frame.image.shape and red[5, 5].tolist() == [0, 0, 255]
    with pytest.raises(ValueError, match="original size"):
        SegmentWriter(tmp_path, save={"mask"}).write(frame, _model_mask())


def test_results_jsonl_one_line_per_frame(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path, NAMES, save={"json"}) as writer:
        for i in range(5):
            frame = _frame(f"img{i}", 10, 20)
            mask = np.zeros(frame.size, np.int64)
            mask[:, :5] = 2
            writer.write(frame, mask, timings={"infer": 3.25})
            lines = (tmp_path / "results.jsonl").read_text().splitlines()
            assert len(lines) == i + 1  # flushed line by line
    records = [json.loads(line) for line in lines]
    assert [r["name"] for r in records] == [f"img{i}" for i in range(5)]
    first = records[0]
    assert first["width"] == 20 and first["height"] == 10 and first["frame_index"] == 0
    assert first["classes"] == [
        {"id": 0, "name": "background", "fraction": 0.75},
        {"id": 2, "name": "bicycle", "fraction": 0.25},
    ]
    assert first["timings_ms"] == {"decode": 1.5, "infer": 3.25}


def test_annotated_video_has_every_frame(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", 12, size=(48, 64), fps=12.0)
    out = tmp_path / "out"
    with SegmentWriter(out, save={"video", "json"}) as writer:
        for frame in open_source(str(video), vid_stride=2):
            mask = np.zeros(frame.size, np.int64)
            mask[10:30, 10:30] = 1
            writer.write(frame, mask)
        assert (out / "videos" / "clip.partial.mp4").is_file()  # still being written under its partial name
    cap = cv2.VideoCapture(str(out / "videos" / "clip.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 6
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    assert not _temp_files(out)


def test_no_temp_files_left_and_failed_write_cleans_up(tmp_path: Path) -> None:
    with SegmentWriter(tmp_path, NAMES, save={"mask", "overlay", "heatmaps", "json"}) as writer:
        for i in range(5):
            frame = _frame(f"d/img{i}")
            heatmaps = np.random.default_rng(i).normal(size=(2, 8, 8)).astype(np.float32)
            mask = resize_mask(_model_mask(i), frame.size)
            writer.write(frame, mask, heatmaps, class_ids=[0, 1])
            writer.write(frame, mask, heatmaps, class_ids=[0, 1])  # overwrites in place
    assert not _temp_files(tmp_path)
    assert len(list((tmp_path / "masks" / "d").iterdir())) == 5
    target = tmp_path / "a_folder"
    target.mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")  # cannot replace a folder with a file
    assert not _temp_files(tmp_path)


def test_next_run_dir_increments(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "segment"
    assert next_run_dir(base) == base / "1"
    assert next_run_dir(base) == base / "2"
    (base / "7").mkdir()
    (base / "notes").mkdir()
    assert next_run_dir(base) == base / "8"
    assert (base / "8").is_dir()


def test_save_options() -> None:
    with pytest.raises(TwdeployError, match="unknown item"):
        SegmentWriter("unused", save={"mask", "gif"})
    assert default_save("image") == {"mask", "overlay", "json"}
    assert default_save("video") == {"video", "json"}
