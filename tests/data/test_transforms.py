"""Transforms: scaling, metadata round trip, image/mask alignment under augmentation."""

import json

import numpy as np
import pytest

from twdeploy.data.transforms import EvalTransform, Normalization, TrainTransform, to_input
from twdeploy.errors import TwdeployError

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], np.uint8)


def _blocks(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A mask of 16 px blocks of random classes (some 255) and an image colour-coding it."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(PALETTE), (h // 16, w // 16)).astype(np.uint8)
    mask = np.kron(coarse, np.ones((16, 16), np.uint8))
    image = PALETTE[mask]
    mask[:16, :16] = 255
    return image, mask


def _decode(chw: np.ndarray) -> np.ndarray:
    """Nearest palette class of each pixel of a unit-scaled image."""
    rgb = chw.transpose(1, 2, 0) * 256.0 - 1.0
    return np.linalg.norm(rgb[:, :, None, :] - PALETTE[None, None].astype(float), axis=-1).argmin(-1)


def test_to_input_unit_scaling():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[0, 0] = 255
    x = to_input(rgb, (10, 20), Normalization())
    assert x.shape == (3, 10, 20) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.min() == pytest.approx(1 / 256) and x.max() == pytest.approx(1.0)
    assert to_input(rgb, (5, 8), Normalization()).shape == (3, 5, 8)


def test_to_input_meanstd():
    rgb = np.full((4, 4, 3), 255, np.uint8)
    norm = Normalization("meanstd", mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    np.testing.assert_allclose(to_input(rgb, (4, 4), norm)[:, 0, 0], [1.0, 2.0, 0.5])


def test_normalization_round_trip():
    norm = Normalization("meanstd", mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0))
    assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    assert Normalization.from_dict({}) == Normalization()
    with pytest.raises(TwdeployError):
        Normalization.from_dict({"mode": "imagenet"})
    with pytest.raises(TwdeployError):
        Normalization.from_dict({"mode": "unit", "scale": 2})


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    image, mask = _blocks(128, 176, seed)
    t = TrainTransform((96, 80), scale=(0.2, 1.0), hflip=0.5, brightness=0, contrast=0, saturation=0)
    x, y = t(image, mask, np.random.default_rng(seed))
    assert x.shape == (3, 96, 80) and y.shape == (96, 80) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(np.unique(mask))  # nearest: no invented ids
    labelled = y != 255
    assert (_decode(x)[labelled] == y[labelled]).mean() > 0.99  # plain INTER_NEAREST: ~0.95


def test_flip_happens_and_is_applied_to_both():
    image, mask = _blocks(64, 64, 0)
    no_crop = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "brightness": 0, "contrast": 0, "saturation": 0}
    x, y = TrainTransform((64, 64), hflip=1.0, **no_crop)(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(y, mask[:, ::-1])
    np.testing.assert_array_equal(_decode(x), _decode(to_input(image, (64, 64), Normalization()))[:, ::-1])


def test_jitter_changes_colours_within_range():
    image, mask = _blocks(64, 64, 1)
    t = TrainTransform((64, 64), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, brightness=0.4)
    x, y = t(image, mask, np.random.default_rng(3))
    np.testing.assert_array_equal(y, mask)
    assert not np.allclose(x, to_input(image, (64, 64), Normalization()))
    assert x.min() > 0 and x.max() <= 1.0


def test_eval_transform_is_deterministic_resize():
    image, mask = _blocks(128, 96, 2)
    t = EvalTransform((64, 48))
    x1, y1 = t(image, mask, np.random.default_rng(0))
    x2, y2 = t(image, mask, np.random.default_rng(1))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, mask[::2, ::2])
    x, y = EvalTransform()(image, mask, np.random.default_rng(0))
    assert x.shape == (3, 128, 96) and y.shape == (128, 96)
