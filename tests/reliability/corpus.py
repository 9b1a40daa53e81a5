"""The fault corpus, generated on the fly: bad images, videos, model files and data folders."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from tests.inference.tiny_model import write_clip

GOOD_IMAGES = {"good_a": (40, 56), "good_b": (33, 47), "deep/good_c": (64, 64)}


def video_frames(path: Path) -> int:
    """Frames OpenCV can decode from a video file (0 for an unplayable one)."""
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def _png(h: int, w: int, seed: int = 0) -> bytes:
    return cv2.imencode(".png", np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))[1].tobytes()


def bad_images() -> dict[str, bytes | Callable[[Path], None]]:
    """File name -> content (or a writer) of images that cannot be segmented."""
    good = _png(32, 32)
    return {
        "zero.png": b"",
        "truncated.png": good[: len(good) // 3],
        "random.jpg": np.random.default_rng(1).bytes(2000),
        "text_as.jpg": b"hello, I am not a picture\n",
        "png_named.bmp": good[:60],
        "header_only.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        "html.webp": b"<html><body>404</body></html>",
        "unknown.xyz": good,
        "broken_link.png": lambda p: os.symlink(p.parent / "does-not-exist.png", p),
    }


def odd_images() -> dict[str, bytes]:
    """Unusual but valid images: each must be segmented."""
    rng = np.random.default_rng(2)
    gray16 = (rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    bgra = rng.integers(0, 256, (21, 31, 4), dtype=np.uint8)
    return {
        "gray16.png": cv2.imencode(".png", gray16)[1].tobytes(),
        "bgra.png": cv2.imencode(".png", bgra)[1].tobytes(),
        "one_pixel.png": cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(),
        "wrong_ext.jpg": _png(25, 19, 3),  # a PNG named .jpg decodes by content
    }


def bad_videos(folder: Path) -> list[Path]:
    """Videos that cannot be opened or hold no frames."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_clip(folder / ".full.mp4", 6)
    data = good.read_bytes()
    good.unlink()
    files = {
        "zero.mp4": b"",
        "truncated.mp4": data[: len(data) // 4],
        "random.avi": np.random.default_rng(4).bytes(5000),
        "text.mkv": b"not a video\n",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return [folder / n for n in files]


def write_corpus_folder(folder: Path) -> tuple[list[str], list[str]]:
    """A folder mixing good, odd, bad images and videos; returns (names to be written, names to be skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, (h, w)) in enumerate(GOOD_IMAGES.items()):
        (folder / f"{name}.png").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(_png(h, w, i))
    for name, content in odd_images().items():
        (folder / name).write_bytes(content)
    for name, content in bad_images().items():
        if callable(content):
            content(folder / name)
        else:
            (folder / name).write_bytes(content)
    bad_videos(folder / "videos")
    write_clip(folder / "videos" / "good.avi", 4)
    good = [*GOOD_IMAGES, *(Path(n).stem for n in odd_images())]
    skipped = [*(Path(n).stem for n in bad_images()), "zero", "truncated", "random", "text"]
    return good, skipped


class CodeRuns:
    """A pickle whose loading would create ``marker``: ``weights_only`` loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def bad_models(folder: Path, good_pt: Path, good_onnx: Path) -> dict[str, tuple[Path, str]]:
    """Model files that must give a one-line error: name -> (path, text the message must hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    pt = torch.load(good_pt, weights_only=True)

    def save(name: str, payload: object) -> Path:
        torch.save(payload, folder / name)
        return folder / name

    cases: dict[str, tuple[Path, str]] = {}
    (folder / "random.pt").write_bytes(np.random.default_rng(5).bytes(4096))
    cases["random bytes .pt"] = (folder / "random.pt", "not a readable checkpoint")
    (folder / "truncated.pt").write_bytes(good_pt.read_bytes()[:5000])
    cases["truncated .pt"] = (folder / "truncated.pt", "not a readable checkpoint")
    (folder / "empty.pt").write_bytes(b"")
    cases["zero-byte .pt"] = (folder / "empty.pt", "file is empty")
    with (folder / "evil.pt").open("wb") as f:
        pickle.dump(CodeRuns(folder / "PWNED"), f)
    cases["pickle running code"] = (folder / "evil.pt", "not a readable checkpoint")
    cases["foreign .pt"] = (save("foreign.pt", {"state_dict": {"w": torch.zeros(2)}}), "not a twdeploy checkpoint")
    cases["no card"] = (save("nocard.pt", {k: v for k, v in pt.items() if k != "card"}), "no model card")
    cases["unknown arch"] = (save("arch.pt", {**pt, "card": {**pt["card"], "arch": "resnet9000"}}), "resnet9000")
    cases["newer card"] = (save("newer.pt", {**pt, "card": {**pt["card"], "version": 99}}), "version 99")
    cases["weights of another arch"] = (
        save("mixed.pt", {**pt, "card": {**pt["card"], "arch": "vgg_mini"}}),
        "holds weights of resnet_mini",
    )
    (folder / "empty.onnx").write_bytes(b"")
    cases["zero-byte .onnx"] = (folder / "empty.onnx", "file is empty")
    (folder / "random.onnx").write_bytes(np.random.default_rng(6).bytes(3000))
    cases["random bytes .onnx"] = (folder / "random.onnx", "not a readable ONNX model")
    (folder / "truncated.onnx").write_bytes(good_onnx.read_bytes()[:2000])
    cases["truncated .onnx"] = (folder / "truncated.onnx", "not a readable ONNX model")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    foreign = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["out"])], "g", [x], [y]))
    onnx.save(foreign, folder / "foreign.onnx")
    cases["foreign .onnx"] = (folder / "foreign.onnx", "no twdeploy model card")
    proto = onnx.load(good_onnx)
    keep = [o for o in proto.graph.output if o.name != "heatmaps"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    onnx.save(proto, folder / "noheatmaps.onnx")
    cases["card but no heatmaps output"] = (folder / "noheatmaps.onnx", "no heatmaps output")
    return cases
