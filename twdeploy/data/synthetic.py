"""Built-in synthetic scenes: textured shapes on cluttered backgrounds, with exact masks and tags.

Each object class has a characteristic shape *and* a characteristic texture / colour family
(hue, saturation, brightness and scale vary). 1-4 objects are painted in order, later ones
over earlier ones, so masks follow the occlusion. The background is low-saturation clutter
(gradients, stripes, blotchy noise, distractor ellipses and lines), all labelled 0. A class
is tagged only if at least `min_visible_pixels(size)` of its pixels stay visible; smaller
remnants are marked 255 (ignore) in the mask, so tags and masks always agree.

Item i is generated from `(seed, split, i)` alone, so scenes are made on the fly, in any
order, and the "train", "val" and "test" splits never share a scene.
"""

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from twdeploy.data.base import Loaded, SegmentationDataset
from twdeploy.data.imageio import IGNORE
from twdeploy.data.transforms import Transform
from twdeploy.errors import TwdeployError

CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "cross", "star")
SPLITS = {"train": 0, "val": 1, "test": 2}

Rng = np.random.Generator
Arr = np.ndarray

# Per class: hue centre in degrees (the colour family); textures are below.
_HUE = {1: 0.0, 2: 220.0, 3: 120.0, 4: 45.0, 5: 300.0, 6: 185.0}
_CROSS_ARM = 0.32  # half-width of a cross arm, relative to its radius


@dataclass(frozen=True)
class PlacedObject:
    """One painted object: its class and its full silhouette before later objects cover it."""

    class_id: int
    shape: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class Scene:
    """A generated image with its mask (class ids, 255 = too-small remnant) and tags."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8
    tags: np.ndarray  # (K,) bool, background included
    objects: tuple[PlacedObject, ...]


def min_visible_pixels(size: int) -> int:
    """Visible pixels a class needs to be tagged."""
    return max(6, round(0.0015 * size * size))


def _rgb(rng: Rng, hue: float, sat: tuple[float, float], val: tuple[float, float]) -> Arr:
    r, g, b = colorsys.hsv_to_rgb((hue % 360.0) / 360.0, rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _polygon(cx: float, cy: float, radius: float, angle: float, unit: np.ndarray) -> np.ndarray:
    """Scale, rotate and move unit-radius vertices (M, 2) to int32 pixel coordinates."""
    c, s = np.cos(angle), np.sin(angle)
    pts = unit @ np.array([[c, s], [-s, c]]) * radius + (cx, cy)
    return np.round(pts).astype(np.int32)


def _regular(n: int, inner: float | None = None) -> np.ndarray:
    """Unit vertices of a regular n-gon, or of an n-pointed star with the given inner radius."""
    steps = 2 * n if inner is not None else n
    t = np.arange(steps) * 2 * np.pi / steps - np.pi / 2
    r = np.ones(steps) if inner is None else np.where(np.arange(steps) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(arm: float) -> np.ndarray:
    """Unit vertices of a plus sign with arms of half-width `arm`."""
    quarter = np.array([(arm, 1.0), (arm, arm), (1.0, arm)])
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # row vector (x, y) -> (y, -x)
    return np.concatenate([quarter @ np.linalg.matrix_power(turn, k) for k in range(4)])


_UNIT = {
    2: _regular(4),
    3: _regular(3) * 1.15,
    5: _cross(_CROSS_ARM),
    6: _regular(5, inner=0.45),
}


def _draw_shape(canvas: np.ndarray, cls: int, cx: float, cy: float, radius: float, angle: float) -> None:
    """Fill the silhouette of class `cls` with 1 on a zeroed uint8 canvas."""
    if cls == 1:
        cv2.circle(canvas, (round(cx), round(cy)), round(radius), 1, thickness=-1)
    elif cls == 4:
        thick = max(2, round(0.4 * radius))
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(radius - thick / 2)), 1, thickness=thick)
    else:
        cv2.fillPoly(canvas, [_polygon(cx, cy, radius, angle, _UNIT[cls])], 1)


Texture = Callable[[Rng, Arr, Arr, Arr, float], Arr]


def _radial(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Disc: shaded like a sphere, bright centre."""
    d2 = (u * u + v * v) / (period * 4.0) ** 2
    return color * (1.2 - 0.6 * np.clip(d2, 0.0, 1.0))[..., None]


def _checker(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Square: two-tone checkerboard."""
    odd = (np.floor(u / period) + np.floor(v / period)) % 2
    return color * (1.0 - 0.45 * odd)[..., None]


def _stripes(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Triangle: hard stripes along one axis."""
    dark = np.sin(u * (2 * np.pi / period)) > 0
    return color * (1.0 - 0.45 * dark)[..., None]


def _grain(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Ring: flat colour with strong per-pixel grain."""
    noise = 22.0 * rng.standard_normal(np.broadcast_shapes(u.shape, v.shape), dtype=np.float32)
    return color + noise[..., None]


def _dots(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Cross: light polka dots."""
    w = 2 * np.pi / period
    dot = (np.sin(u * w) * np.sin(v * w)) > 0.55
    return color + (255.0 - color) * (0.6 * dot)[..., None]


def _waves(rng: Rng, u: Arr, v: Arr, color: Arr, period: float) -> Arr:
    """Star: soft diagonal waves."""
    return color * (0.75 + 0.25 * np.sin((u + v) * (np.pi / period)))[..., None]


_TEXTURE: dict[int, Texture] = {1: _radial, 2: _checker, 3: _stripes, 4: _grain, 5: _dots, 6: _waves}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation clutter, float32 (size, size, 3) in [0, 255]-ish."""
    base, other = (_rgb(rng, rng.uniform(0, 360), (0.0, 0.25), (0.25, 0.85)) for _ in range(2))
    yy, xx = np.ogrid[:size, :size]
    kind = rng.integers(3)
    if kind == 0:  # linear gradient
        t = (xx * np.cos(a := rng.uniform(0, 2 * np.pi)) + yy * np.sin(a)) / size
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == 1:  # stripes
        a, period = rng.uniform(0, np.pi), size * rng.uniform(0.05, 0.2)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(a) + yy * np.sin(a)) * (2 * np.pi / period))
    else:  # blotchy noise
        coarse = rng.random((max(2, size // 12),) * 2).astype(np.float32)
        t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = base + (other - base) * np.asarray(t, dtype=np.float32)[..., None]
    for _ in range(rng.integers(0, 4)):  # distractor ellipses
        color = _rgb(rng, rng.uniform(0, 360), (0.0, 0.3), (0.15, 0.95))
        center = (int(rng.integers(size)), int(rng.integers(size)))
        axes = (int(size * rng.uniform(0.04, 0.2)), int(size * rng.uniform(0.04, 0.2)))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color.tolist(), -1)
    for _ in range(rng.integers(0, 3)):  # distractor lines
        color = _rgb(rng, rng.uniform(0, 360), (0.0, 0.3), (0.15, 0.95))
        p, q = (tuple(int(c) for c in rng.integers(0, size, 2)) for _ in range(2))
        cv2.line(img, p, q, color.tolist(), max(1, size // 48))
    return img


def render_scene(rng: np.random.Generator, size: int) -> Scene:
    """Draw one scene of size x size pixels from `rng`."""
    image = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    canvas = np.zeros((size, size), dtype=np.uint8)
    objects = []
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        radius = size * rng.uniform(0.1, 0.26)
        cx, cy = size * rng.uniform(0.15, 0.85, 2)
        angle = rng.uniform(0, 2 * np.pi)
        canvas[:] = 0
        _draw_shape(canvas, cls, cx, cy, radius, angle)
        x, y, w, h = cv2.boundingRect(canvas)
        if w == 0 or h == 0:
            continue
        region = (slice(y, y + h), slice(x, x + w))
        inside = canvas[region] > 0
        yy, xx = np.ogrid[y : y + h, x : x + w]
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, (yy - cy) * c - (xx - cx) * s
        color = _rgb(rng, _HUE[cls] + rng.uniform(-12, 12), (0.6, 1.0), (0.6, 0.95))
        texture = _TEXTURE[cls](rng, u, v, color, size / 16 * rng.uniform(0.8, 1.25))
        image[region][inside] = texture[inside]
        mask[region][inside] = cls
        objects.append(PlacedObject(cls, canvas > 0))
    image += 5.0 * rng.standard_normal((size, size, 1), dtype=np.float32)  # sensor noise
    counts = np.bincount(mask.ravel(), minlength=len(CLASS_NAMES))
    tags = counts >= min_visible_pixels(size)
    tags[0] = counts[0] > 0
    remnants = np.flatnonzero((counts > 0) & ~tags)
    if remnants.size:
        mask[np.isin(mask, remnants)] = IGNORE
    return Scene(np.clip(image, 0, 255).astype(np.uint8), mask, tags, tuple(objects))


class SyntheticScenes(SegmentationDataset):
    """`num_images` synthetic scenes of `image_size` px (64..512), deterministic by (seed, split, index)."""

    def __init__(
        self,
        num_images: int,
        image_size: int = 96,
        seed: int = 0,
        split: str = "train",
        transform: Transform | None = None,
    ) -> None:
        if split not in SPLITS:
            raise TwdeployError(f"synthetic split {split!r} is unknown; use one of {sorted(SPLITS)}")
        if not 64 <= image_size <= 512:
            raise TwdeployError(f"synthetic image size {image_size} is outside 64..512; pick a size in range")
        if num_images < 1:
            raise TwdeployError(f"synthetic dataset needs at least 1 image, got {num_images}")
        super().__init__(CLASS_NAMES, transform, name=f"synthetic:{num_images} ({split})")
        self.num_images, self.image_size, self.seed, self.split = num_images, image_size, seed, split

    def __len__(self) -> int:
        return self.num_images

    def scene(self, i: int) -> Scene:
        """Generate scene i (independent of every other item)."""
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {i} out of range for {self.num_images} items")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], i])
        return render_scene(rng, self.image_size)

    def _has_mask(self, i: int) -> bool:
        return True

    def _load(self, i: int) -> Loaded:
        scene = self.scene(i)
        return scene.image, scene.mask, scene.tags
