"""SyntheticScenes: determinism, disjoint splits, masks vs tags, occlusion, sizes, item contract."""

import hashlib

import numpy as np
import pytest
import torch

from twdeploy.data.synthetic import CLASS_NAMES, SyntheticScenes, min_visible_pixels
from twdeploy.errors import TwdeployError

K = len(CLASS_NAMES)


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def test_item_depends_only_on_seed_split_index():
    a = SyntheticScenes(50, 96, seed=3)
    b = SyntheticScenes(10, 96, seed=3)
    for i in (9, 2, 5):  # different order, different dataset length
        sa, sb = a.scene(i), b.scene(i)
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.mask, sb.mask)
        np.testing.assert_array_equal(sa.tags, sb.tags)
    assert _digest(a.scene(4).image) != _digest(SyntheticScenes(10, 96, seed=4).scene(4).image)
    assert _digest(a.scene(4).image) != _digest(a.scene(5).image)


def test_splits_are_disjoint():
    digests = {
        split: {_digest(SyntheticScenes(60, 64, split=split).scene(i).image) for i in range(60)}
        for split in ("train", "val", "test")
    }
    assert all(len(d) == 60 for d in digests.values())
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_masks_agree_with_tags():
    ds = SyntheticScenes(80, 96, seed=1)
    need = min_visible_pixels(96)
    seen = np.zeros(K, dtype=bool)
    for i in range(len(ds)):
        s = ds.scene(i)
        counts = np.bincount(s.mask.ravel(), minlength=256)
        assert s.tags[0] and counts[0] > 0
        for c in range(1, K):
            assert s.tags[c] == (counts[c] > 0), (i, c)
            assert not s.tags[c] or counts[c] >= need
        assert set(np.unique(s.mask)) <= set(range(K)) | {255}
        seen |= s.tags
    assert seen.all(), "every class should occur in 80 scenes"


def test_occlusion_later_objects_paint_over_earlier_ones():
    ds = SyntheticScenes(60, 96, seed=2)
    overlaps = 0
    for i in range(len(ds)):
        s = ds.scene(i)
        expected = np.zeros(s.mask.shape, dtype=np.uint8)
        coverage = np.zeros(s.mask.shape, dtype=int)
        for obj in s.objects:
            expected[obj.shape] = obj.class_id
            coverage += obj.shape
        overlaps += int(((coverage > 1) & (expected != 0)).any())
        labelled = s.mask != 255
        np.testing.assert_array_equal(s.mask[labelled], expected[labelled])
        assert not s.tags[np.unique(expected[~labelled])].any()  # ignore only where a remnant is untagged
        top = s.objects[-1]
        assert (s.mask[top.shape] == top.class_id).all() or not s.tags[top.class_id]
    assert overlaps >= 10, "scenes should contain occlusions"


def test_classes_have_distinct_colour_families():
    """A nearest-centroid classifier on the mean colour of an object class is accurate."""
    feats: dict[int, list[np.ndarray]] = {c: [] for c in range(1, K)}
    ds = SyntheticScenes(150, 96, seed=5)
    for i in range(len(ds)):
        s = ds.scene(i)
        for c in np.flatnonzero(s.tags[1:]) + 1:
            feats[int(c)].append(s.image[s.mask == c].astype(float).mean(axis=0))
    train = {c: np.mean(v[: len(v) // 2], axis=0) for c, v in feats.items()}
    hits = total = 0
    for c, v in feats.items():
        for f in v[len(v) // 2 :]:
            guess = min(train, key=lambda k: np.linalg.norm(train[k] - f))
            hits += guess == c
            total += 1
    assert hits / total > 0.8


@pytest.mark.parametrize("size", [64, 512])
def test_sizes(size):
    ds = SyntheticScenes(3, size)
    s = ds.scene(0)
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == (size, size)
    assert s.tags[1:].any()
    item = ds[1]
    assert item["image"].shape == (3, size, size)
    assert item["mask"].shape == (size, size)


def test_item_contract_and_pixel_budget():
    ds = SyntheticScenes(6, 64)
    item = ds[2]
    assert set(item) == {"image", "mask", "tags", "has_mask", "index"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["image"].min() > 0 and item["image"].max() <= 1.0
    assert item["mask"].dtype == torch.int64 and item["tags"].dtype == torch.float32
    assert item["tags"].shape == (K,) and item["tags"][0] == 1
    assert bool(item["has_mask"]) and item["index"] == 2
    np.testing.assert_array_equal(ds.tags_matrix()[2], item["tags"].numpy().astype(bool))
    assert ds.num_classes == K and ds.class_names == list(CLASS_NAMES)

    budgeted = ds.with_pixel_budget([1])
    assert budgeted.has_pixel_labels(1) and not budgeted.has_pixel_labels(2)
    assert ds.has_pixel_labels(2)  # the original is unchanged
    off = budgeted[2]
    assert not bool(off["has_mask"]) and (off["mask"] == 255).all()
    torch.testing.assert_close(off["tags"], item["tags"])
    assert bool(budgeted[1]["has_mask"])


@pytest.mark.parametrize("kw", [{"image_size": 32}, {"split": "holdout"}, {"num_images": 0}])
def test_bad_arguments(kw):
    args = {"num_images": 4} | kw
    with pytest.raises(TwdeployError):
        SyntheticScenes(**args)
