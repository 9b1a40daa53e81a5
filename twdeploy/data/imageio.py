"""Reading images and label PNGs from disk; an unreadable file raises `BadItemError`."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from twdeploy.errors import BadItemError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# ANYDEPTH|ANYCOLOR keeps 16-bit and grayscale data like IMREAD_UNCHANGED does, but unlike it
# applies the EXIF orientation (phone photos would come out sideways); alpha is dropped.
_IMREAD_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR

IGNORE = 255
"""Mask value for unknown / ignored pixels."""


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert a decoded image (gray, gray+alpha, BGR, BGRA; 8/16-bit or float) to 8-bit BGR."""
    if image.size == 0:
        raise BadItemError("image has no pixels")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype.kind == "f":
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadItemError(f"unsupported pixel type {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels in (1, 2):
        gray = image if image.ndim == 2 else image[:, :, 0]
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    raise BadItemError(f"unsupported channel count {channels}")


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to 8-bit BGR: the one decoder of training and serving.

    EXIF orientation is applied, 16-bit is scaled to 8-bit, gray is repeated to three channels,
    alpha is dropped, palette images become their colours. A ``BadItemError`` says why a file
    cannot be used, without the path (callers add it).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise BadItemError(f"cannot read file ({exc.strerror})") from exc
    if data.size == 0:
        raise BadItemError("file is empty")
    image = cv2.imdecode(data, _IMREAD_FLAGS)
    if image is None:
        raise BadItemError("not a decodable image (corrupt or unsupported format)")
    return to_bgr8(image)


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array (:func:`read_image`, channels reversed)."""
    try:
        bgr = read_image(path)
    except BadItemError as err:
        raise BadItemError(f"{path}: {err}; re-save it as JPEG/PNG, fix its permissions or remove it") from err
    return np.ascontiguousarray(bgr[:, :, ::-1])


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
