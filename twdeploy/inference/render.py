"""Pictures from segmentation outputs: palette, colour masks, overlays with a legend, heatmaps.

Also brings model-size outputs back to the original image size. Images are BGR uint8 (OpenCV).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import cv2
import numpy as np


def _voc_palette() -> np.ndarray:
    """The PASCAL VOC palette (256 x RGB): bits of the index spread over the colour channels."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, rgb = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette[index] = rgb
    return palette


PALETTE_RGB = _voc_palette()  # index 0 (background) is black
PALETTE_BGR = np.ascontiguousarray(PALETTE_RGB[:, ::-1])


def _diverging_lut() -> np.ndarray:
    """256 x BGR blue -> white -> red, linear in each half (matplotlib's 'bwr')."""
    t = np.linspace(-1.0, 1.0, 256)
    fade = 1.0 - np.abs(t)  # 1 at the centre (white), 0 at the ends
    red = np.where(t < 0, fade, 1.0)
    blue = np.where(t > 0, fade, 1.0)
    return np.round(np.stack([blue, fade, red], axis=1) * 255).astype(np.uint8)


HEATMAP_LUT_BGR = _diverging_lut()


def class_name(class_id: int, names: Sequence[str] | None) -> str:
    """The class name when known, else 'class <id>'."""
    return names[class_id] if names is not None and 0 <= class_id < len(names) else f"class {class_id}"


def _drawn(mask: np.ndarray, classes: Collection[int] | None, background: int | None) -> np.ndarray:
    """Boolean map of the pixels to draw: in `classes` (all if None) and not background."""
    keep = np.ones(mask.shape, bool) if classes is None else np.isin(mask, list(classes))
    return keep if background is None else keep & (mask != background)


def colorize(mask: np.ndarray, classes: Collection[int] | None = None) -> np.ndarray:
    """Class-id mask (H, W) -> BGR palette image; ids outside `classes` are drawn black."""
    if mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError("palette colours exist for class ids 0..255 only")
    out = PALETTE_BGR[mask.astype(np.uint8)]
    if classes is not None:
        out[~np.isin(mask, list(classes))] = 0
    return out


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.5,
    names: Sequence[str] | None = None,
    classes: Collection[int] | None = None,
    background: int | None = 0,
    legend: bool = True,
) -> np.ndarray:
    """Blend the colour mask over `image` (same H, W) where a drawn class is, plus a legend."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size: resize_mask first")
    out = image.copy()
    drawn = _drawn(mask, classes, background)
    colours = colorize(mask)
    out[drawn] = (image[drawn] * (1.0 - alpha) + colours[drawn] * alpha + 0.5).astype(np.uint8)
    if legend:
        present = [int(c) for c in np.unique(mask[drawn])]
        draw_legend(out, [(class_name(c, names), PALETTE_BGR[c]) for c in present])
    return out


def draw_legend(image: np.ndarray, entries: Sequence[tuple[str, np.ndarray]]) -> None:
    """Draw (name, BGR colour) rows with swatches in the top-left corner, in place."""
    if not entries:
        return
    height = image.shape[0]
    scale = max(0.35, min(1.0, height / 800))
    thickness = 1 if scale < 0.7 else 2
    row = int(22 * scale) + 6
    pad = max(3, row // 4)
    max_rows = max(1, (height - 2 * pad) // row)
    if len(entries) > max_rows:
        more = len(entries) - max_rows + 1
        entries = [*entries[: max_rows - 1], (f"+{more} more", np.zeros(3, np.uint8))]
    font = cv2.FONT_HERSHEY_SIMPLEX
    text_w = max(cv2.getTextSize(name, font, scale, thickness)[0][0] for name, _ in entries)
    box_w = min(image.shape[1], pad * 3 + row + text_w)
    box_h = min(height, pad * 2 + row * len(entries))
    panel = image[:box_h, :box_w]
    panel[:] = (panel * 0.4).astype(np.uint8)
    for i, (name, colour) in enumerate(entries):
        top = pad + i * row
        swatch = row - 4
        cv2.rectangle(image, (pad, top + 2), (pad + swatch, top + 2 + swatch), [int(v) for v in colour], -1)
        cv2.rectangle(image, (pad, top + 2), (pad + swatch, top + 2 + swatch), (255, 255, 255), 1)
        baseline = top + 2 + swatch - max(1, swatch // 6)
        cv2.putText(image, name, (pad * 2 + row, baseline), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def colorize_heatmap(heatmap: np.ndarray, limit: float | None = None) -> np.ndarray:
    """(H, W) relevance -> BGR: 0 white, positive red, negative blue, symmetric limits +-limit.

    `limit` defaults to max |heatmap| (per heatmap); an all-zero heatmap is all white.
    """
    values = np.nan_to_num(heatmap.astype(np.float32))
    lim = float(np.abs(values).max(initial=0.0)) if limit is None else float(limit)
    scaled = values / lim if lim > 0 else np.zeros_like(values)
    index = np.clip(np.rint((scaled + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return HEATMAP_LUT_BGR[index]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-id mask to size (H0, W0), pixel centres aligned, dtype kept."""
    h, w = mask.shape
    height, width = size
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def resize_heatmaps(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (K, h, w) heatmaps to (K, H0, W0) float32."""
    height, width = size
    if heatmaps.shape[1:] == (height, width):
        return heatmaps.astype(np.float32, copy=False)
    out = np.empty((heatmaps.shape[0], height, width), np.float32)
    for k, heatmap in enumerate(heatmaps):
        out[k] = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return out
