"""Palette, colour masks, overlays, heatmap colours and resizing back to the original size."""

from __future__ import annotations

import numpy as np
import pytest

from twdeploy.inference.render import (
    PALETTE_BGR,
    PALETTE_RGB,
    colorize,
    colorize_heatmap,
    overlay,
    resize_heatmaps,
    resize_mask,
)


def test_voc_palette() -> None:
    assert PALETTE_RGB.shape == (256, 3) and PALETTE_RGB.dtype == np.uint8
    assert PALETTE_RGB[0].tolist() == [0, 0, 0]
    assert PALETTE_RGB[1].tolist() == [128, 0, 0]  # aeroplane
    assert PALETTE_RGB[15].tolist() == [192, 128, 128]  # person
    assert PALETTE_RGB[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in PALETTE_RGB}) == 256
    assert PALETTE_BGR[1].tolist() == [0, 0, 128]


def test_colorize_and_class_filter() -> None:
    mask = np.array([[0, 1], [15, 1]])
    out = colorize(mask)
    assert out.shape == (2, 2, 3) and out[1, 0].tolist() == [128, 128, 192]
    only_person = colorize(mask, classes=[15])
    assert only_person[0, 1].tolist() == [0, 0, 0] and only_person[1, 0].tolist() == [128, 128, 192]
    with pytest.raises(ValueError):
        colorize(np.array([[256]]))


def test_overlay_blends_classes_and_keeps_background() -> None:
    image = np.full((120, 160, 3), 200, np.uint8)
    mask = np.zeros((120, 160), np.int64)
    mask[80:, 100:] = 1
    mask[80:, :40] = 2
    out = overlay(image, mask, alpha=0.5, legend=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[10, 80].tolist() == [200, 200, 200]  # background untouched
    assert out[100, 130].tolist() == [100, 100, 164]  # 0.5 * 200 + 0.5 * (0, 0, 128)
    filtered = overlay(image, mask, classes=[2], legend=False)
    assert filtered[100, 130].tolist() == [200, 200, 200] and filtered[100, 10].tolist() != [200, 200, 200]


def test_overlay_legend_lists_present_classes() -> None:
    image = np.full((120, 160, 3), 200, np.uint8)
    mask = np.zeros((120, 160), np.int64)
    mask[100:, 150:] = 3
    plain = overlay(image, mask, legend=False)
    with_legend = overlay(image, mask, names=["bg", "a", "b", "cat"])
    assert (with_legend[:20, :20] != plain[:20, :20]).any()
    swatch = with_legend[5:15, 5:15].reshape(-1, 3).tolist()
    assert PALETTE_BGR[3].tolist() in swatch
    assert (overlay(image, np.zeros((120, 160), np.int64)) == image).all()  # nothing present, no legend
    with pytest.raises(ValueError, match="resize_mask"):
        overlay(image, np.zeros((60, 80), np.int64))


def test_heatmap_colours_are_diverging_and_symmetric() -> None:
    out = colorize_heatmap(np.array([[-1.0, 0.0, 1.0]], np.float32))
    blue, white, red = (out[0, i].astype(int) for i in range(3))
    assert blue.tolist() == [255, 0, 0] and red.tolist() == [0, 0, 255]  # BGR
    assert (white >= 250).all()
    half = colorize_heatmap(np.array([[-0.5, 0.0, 2.0]], np.float32))[0, 0].astype(int)  # limit is 2
    assert half[0] == 255 and 180 < half[1] < 200 and half[2] == half[1]  # light blue
    assert (colorize_heatmap(np.zeros((3, 3), np.float32)) >= 250).all()
    fixed = colorize_heatmap(np.array([[0.5]], np.float32), limit=1.0)[0, 0].astype(int)
    assert fixed[2] == 255 and 120 < fixed[0] < 136


def test_resize_mask_nearest_keeps_ids_and_dtype() -> None:
    small = np.array([[0, 1], [2, 3]], np.int32)
    big = resize_mask(small, (4, 6))
    assert big.dtype == np.int32 and big.shape == (4, 6)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(small, 2, axis=0), 3, axis=1))
    odd = resize_mask(np.random.default_rng(0).integers(0, 21, (64, 64)), (37, 101))
    assert odd.shape == (37, 101) and set(np.unique(odd)) <= set(range(21))
    np.testing.assert_array_equal(resize_mask(small, (2, 2)), small)


def test_resize_heatmaps() -> None:
    heatmaps = np.stack([np.ones((8, 8)), -np.ones((8, 8))]).astype(np.float32)
    out = resize_heatmaps(heatmaps, (30, 50))
    assert out.shape == (2, 30, 50) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], -1.0)
