"""In-memory sources for the Python API: numpy arrays, PIL images and torch tensors, one or a list.

Conventions follow OpenCV and Ultralytics: a numpy array is BGR (as ``cv2.imread`` returns it;
gray, 16-bit and float arrays are accepted), a PIL image and a torch tensor are RGB. A tensor is
``(3, H, W)`` or ``(N, 3, H, W)``, float in [0, 1] or uint8.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twdeploy.data.imageio import to_bgr8
from twdeploy.errors import BadItemError, TwdeployError
from twdeploy.inference.sources import Frame, Item, Skipped, Source


def is_in_memory(source: Any) -> bool:
    """True for an array, PIL image or tensor, or a list/tuple of them."""
    if isinstance(source, list | tuple):
        return bool(source) and all(is_in_memory(s) for s in source)
    return isinstance(source, np.ndarray) or _is_pil(source) or _is_tensor(source)


def _is_pil(obj: Any) -> bool:
    from PIL import Image

    return isinstance(obj, Image.Image)


def _is_tensor(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.Tensor)


def to_bgr_image(obj: Any) -> np.ndarray:
    """One in-memory image as 8-bit BGR (H, W, 3); raises BadItemError for what is not an image."""
    if _is_pil(obj):
        return np.ascontiguousarray(np.asarray(obj.convert("RGB"))[:, :, ::-1])
    if _is_tensor(obj):
        array = obj.detach().cpu().numpy()
        if array.ndim != 3 or array.shape[0] not in (1, 3):
            raise BadItemError(f"tensor of shape {tuple(obj.shape)}: give (3, H, W) RGB or (N, 3, H, W)")
        array = np.moveaxis(array, 0, -1)
        return to_bgr8(array if array.shape[2] == 1 else np.ascontiguousarray(array[:, :, ::-1]))
    if isinstance(obj, np.ndarray):
        if obj.ndim not in (2, 3):
            raise BadItemError(f"array of shape {obj.shape}: give (H, W) or (H, W, C) pixels")
        return to_bgr8(obj)
    raise BadItemError(f"{type(obj).__name__} is not an image: give a path, numpy array, PIL image or tensor")


def _expand(source: Any) -> list[Any]:
    """A list of single images: a batched (N, 3, H, W) tensor becomes N images."""
    items = list(source) if isinstance(source, list | tuple) else [source]
    out: list[Any] = []
    for item in items:
        out.extend(list(item) if _is_tensor(item) and item.ndim == 4 else [item])
    return out


@dataclass
class ArraySource(Source):
    """In-memory images, named ``image0``, ``image1``, ... in order."""

    images: Sequence[Any]

    @property
    def frame_count(self) -> int:
        return len(self.images)

    def _items(self) -> Iterator[Item]:
        for i, obj in enumerate(self.images):
            name = f"image{i}"
            try:
                yield Frame(to_bgr_image(obj), name, name, "image")
            except BadItemError as exc:
                yield Skipped(name, str(exc), name)


def array_source(source: Any) -> ArraySource:
    """An ``ArraySource`` over one in-memory image or a list of them."""
    images = _expand(source)
    if not images:
        raise TwdeployError("no images given: pass a path, an array, a PIL image, a tensor or a list of them")
    return ArraySource(images)
