"""Reading images and label PNGs from disk; an unreadable file raises `BadItemError`."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from twdeploy.errors import BadItemError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

IGNORE = 255
"""Mask value for unknown / ignored pixels."""


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise BadItemError(f"{path}: cannot read ({err.strerror}); fix its permissions or remove it") from err
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise BadItemError(f"{path}: not a decodable image; re-save it as JPEG/PNG or remove it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label_png(path: Path) -> np.ndarray:
    """Read a single-channel label PNG (palette or grayscale) as an HxW array of class ids.

    For palette PNGs the palette *index* is returned, never the RGB colour.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I;16", "I"):
                raise BadItemError(
                    f"{path}: mask has mode {img.mode}; save it as a single-channel (palette/grayscale) PNG"
                )
            return np.asarray(img).astype(np.int64)
    except (OSError, UnidentifiedImageError) as err:
        raise BadItemError(f"{path}: not a readable PNG mask; re-save it or remove it") from err


def check_mask(mask: np.ndarray, num_classes: int, path: Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """Validate ids and size of a mask read from `path`; return it as uint8."""
    if mask.shape != image_shape[:2]:
        raise BadItemError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image_shape[1]}x{image_shape[0]}; resize the mask (nearest) to the image size"
        )
    return check_ids(mask, num_classes, path)


def check_ids(mask: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Raise `BadItemError` if `mask` holds an id >= num_classes other than 255; return it as uint8."""
    bad = np.unique(mask[((mask >= num_classes) & (mask != IGNORE)) | (mask < 0)])
    if bad.size:
        raise BadItemError(
            f"{path}: mask holds ids {bad.tolist()} outside 0..{num_classes - 1}; "
            f"use ids < {num_classes} (classes.txt order) or 255 for ignore"
        )
    return mask.astype(np.uint8)


def tags_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,) bool: which classes occur in the mask (255 ignored)."""
    counts = np.bincount(mask[mask != IGNORE].ravel().astype(np.int64), minlength=num_classes)
    return counts[:num_classes] > 0
