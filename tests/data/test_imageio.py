"""One image decoder: training (``read_rgb``) and serving (``segment``'s sources) decode a file to the same array."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from twdeploy.data.imageio import read_image, read_rgb
from twdeploy.errors import BadItemError
from twdeploy.inference.sources import open_source

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def _served(path: Path) -> np.ndarray:
    """What ``twdeploy segment`` decodes for ``path`` (BGR)."""
    with open_source(str(path)) as source:
        (frame,) = list(source)
    return frame.image


def _write(path: Path, kind: str) -> np.ndarray:
    """Write one file of ``kind``; return the RGB uint8 array it must decode to."""
    if kind == "rgb8":
        Image.fromarray(RGB).save(path)
        return RGB
    if kind == "rgb16":
        deep = RGB.astype(np.uint16) * 257
        cv2.imwrite(str(path), deep[:, :, ::-1])
        return RGB
    if kind == "gray8":
        Image.fromarray(RGB[:, :, 0]).save(path)
        return np.repeat(RGB[:, :, :1], 3, axis=2)
    if kind == "gray16":
        cv2.imwrite(str(path), RGB[:, :, 0].astype(np.uint16) * 257)
        return np.repeat(RGB[:, :, :1], 3, axis=2)
    if kind == "rgba":
        alpha = np.full((*RGB.shape[:2], 1), 7, np.uint8)
        Image.fromarray(np.concatenate([RGB, alpha], axis=2), mode="RGBA").save(path)
        return RGB
    if kind == "palette":
        palette = Image.fromarray(RGB).quantize(colors=16)
        palette.save(path)
        return np.asarray(palette.convert("RGB"))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["rgb8", "rgb16", "gray8", "gray16", "rgba", "palette"])
def test_training_and_serving_decode_the_same_array(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    expected = _write(path, kind)
    trained = read_rgb(path)
    assert trained.dtype == np.uint8 and trained.shape == (*RGB.shape[:2], 3)
    np.testing.assert_array_equal(trained, expected)
    np.testing.assert_array_equal(_served(path)[:, :, ::-1], trained)


def test_exif_orientation_is_applied_for_both(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.fromarray(RGB).save(path, exif=exif, quality=100)
    trained = read_rgb(path)
    assert trained.shape == (RGB.shape[1], RGB.shape[0], 3)
    upright = np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270))
    assert np.abs(trained.astype(int) - upright.astype(int)).mean() < 2.0
    np.testing.assert_array_equal(_served(path)[:, :, ::-1], trained)


def test_bad_files_name_the_file_for_training(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    for name, reason in (("empty.png", "file is empty"), ("junk.jpg", "not a decodable image")):
        with pytest.raises(BadItemError, match=reason):
            read_image(tmp_path / name)
        with pytest.raises(BadItemError, match=f"{name}: {reason}"):
            read_rgb(tmp_path / name)
