"""Input scaling and OpenCV augmentation, applied identically to an image and its mask.

Every transform is called as `transform(rgb, mask, rng)` with an HxWx3 uint8 RGB image, an
HxW uint8 mask (255 = ignore) and a numpy Generator, and returns `(image, mask)`: a float32
(3, H, W) array scaled by a `Normalization` and an int64 (H, W) mask. Masks are always resized
with (pixel-centre exact) nearest-neighbour interpolation, so they keep their class ids.
"""

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from twdeploy.errors import TwdeployError

Size = tuple[int, int]
"""(height, width) in pixels."""

_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Normalization:
    """How uint8 RGB becomes network input.

    mode "unit" (method.md, the reference): `(x + 1) / 256`, in (0, 1], mean/std unused.
    mode "meanstd": `(x / 255 - mean) / std` per channel.
    """

    mode: Literal["unit", "meanstd"] = "unit"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.mode not in ("unit", "meanstd"):
            raise TwdeployError(f"normalization mode {self.mode!r} is unknown; use 'unit' or 'meanstd'")

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Scale an HxWx3 RGB array with values in [0, 255] (uint8 or float) to float32."""
        x = rgb.astype(np.float32)
        if self.mode == "unit":
            return (x + 1.0) / 256.0
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (x / 255.0 - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for model metadata."""
        return {"mode": self.mode, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Normalization":
        """Inverse of `to_dict`; missing keys take the defaults."""
        defaults = asdict(cls())
        unknown = set(data) - set(defaults)
        if unknown:
            raise TwdeployError(
                f"normalization metadata has unknown keys {sorted(unknown)}; expected {sorted(defaults)}"
            )
        merged = {**defaults, **data}
        return cls(mode=merged["mode"], mean=tuple(merged["mean"]), std=tuple(merged["std"]))


class Transform(Protocol):
    """What datasets call on every item."""

    def __call__(
        self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def as_size(size: int | Size) -> Size:
    """An int means a square (size, size)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _resize_image(rgb: np.ndarray, size: Size) -> np.ndarray:
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = h * w < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    # NEAREST_EXACT samples at pixel centres like INTER_LINEAR; plain INTER_NEAREST is shifted.
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def to_input(rgb_uint8: np.ndarray, size: Size, norm: Normalization) -> np.ndarray:
    """Preprocess one HxWx3 uint8 RGB image: resize to size=(H, W), scale, to float32 (3, H, W)."""
    scaled = norm.apply(_resize_image(rgb_uint8, size))
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


@dataclass(frozen=True)
class EvalTransform:
    """Deterministic: resize image (linear/area) and mask (nearest) to `size`; None keeps the size."""

    size: Size | None = None
    norm: Normalization = Normalization()

    def __call__(
        self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        size = self.size or (rgb.shape[0], rgb.shape[1])
        return to_input(rgb, size, self.norm), _resize_mask(mask, size).astype(np.int64)


@dataclass(frozen=True)
class TrainTransform:
    """Random resized crop to `size`, horizontal flip, brightness/contrast/saturation jitter.

    `scale` is the crop's share of the image area, `ratio` its width/height range; each jitter
    factor is drawn from [1 - j, 1 + j]. Hue is never changed.
    """

    size: Size
    norm: Normalization = Normalization()
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(
        self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        y, x, h, w = self.crop_box(rgb.shape[0], rgb.shape[1], rng)
        image = _resize_image(rgb[y : y + h, x : x + w], self.size)
        labels = _resize_mask(mask[y : y + h, x : x + w], self.size)
        if rng.random() < self.hflip:
            image, labels = image[:, ::-1], labels[:, ::-1]
        image = self.jitter(image, rng)
        chw = np.ascontiguousarray(self.norm.apply(image).transpose(2, 0, 1))
        return chw, np.ascontiguousarray(labels).astype(np.int64)

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(y, x, h, w) of a random crop of the given area share and aspect ratio."""
        area = height * width * rng.uniform(*self.scale)
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
        w = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
        h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w

    def jitter(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour jitter on a uint8 image; returns float32 HxWx3 in [0, 255]."""
        img = rgb.astype(np.float32) * rng.uniform(1 - self.brightness, 1 + self.brightness)
        gray = img @ _GRAY
        img = (img - gray.mean()) * rng.uniform(1 - self.contrast, 1 + self.contrast) + gray.mean()
        gray = (img @ _GRAY)[..., None]
        img = gray + (img - gray) * rng.uniform(1 - self.saturation, 1 + self.saturation)
        return np.clip(img, 0.0, 255.0)
