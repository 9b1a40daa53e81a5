"""MixedBatchSampler: shares, reshuffling, determinism, resume, DataLoader use."""

import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from twdeploy.data.sampler import MixedBatchSampler
from twdeploy.data.synthetic import SyntheticScenes

PIXEL = list(range(100, 107))  # 7 items
TAG = list(range(13))


def _batches(sampler: MixedBatchSampler, n: int) -> list[list[int]]:
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize(("share", "n_pixel"), [(0.5, 5), (0.3, 3), (0.0, 0), (1.0, 10)])
def test_every_batch_has_the_share(share, n_pixel):
    for batch in _batches(MixedBatchSampler(PIXEL, TAG, 10, pixel_share=share), 20):
        assert len(batch) == 10
        assert sum(i in PIXEL for i in batch) == n_pixel


def test_each_subset_reshuffled_when_exhausted():
    batches = _batches(MixedBatchSampler(PIXEL, TAG, 10, seed=4), 28)  # 20 passes over PIXEL
    pixel_stream = [i for b in batches for i in b[:5]]
    tag_stream = [i for b in batches for i in b[5:]]
    passes = [tuple(pixel_stream[j : j + 7]) for j in range(0, len(pixel_stream), 7)]
    assert all(sorted(p) == PIXEL for p in passes)  # every pass covers the subset exactly once
    assert len(set(passes)) > 10  # and in a new order
    tag_passes = [tuple(tag_stream[j : j + 13]) for j in range(0, 13 * 10, 13)]
    assert all(sorted(p) == TAG for p in tag_passes) and len(set(tag_passes)) > 5


def test_subsets_are_independent():
    a = _batches(MixedBatchSampler(PIXEL, TAG, 10, seed=1), 5)
    b = _batches(MixedBatchSampler(PIXEL[:3], TAG, 10, seed=1), 5)
    assert [x[5:] for x in a] == [x[5:] for x in b]


def test_deterministic_by_seed():
    assert _batches(MixedBatchSampler(PIXEL, TAG, 6, seed=3), 15) == _batches(
        MixedBatchSampler(PIXEL, TAG, 6, seed=3), 15
    )
    assert _batches(MixedBatchSampler(PIXEL, TAG, 6, seed=3), 15) != _batches(
        MixedBatchSampler(PIXEL, TAG, 6, seed=4), 15
    )


def test_resume_continues_the_same_sequence():
    full = _batches(MixedBatchSampler(PIXEL, TAG, 6, seed=9), 40)
    first = MixedBatchSampler(PIXEL, TAG, 6, seed=9)
    assert _batches(first, 17) == full[:17]
    state = first.state_dict()
    assert state == {"step": 17}
    resumed = MixedBatchSampler(PIXEL, TAG, 6, seed=9)
    resumed.load_state_dict(state)
    assert _batches(resumed, 23) == full[17:]
    assert _batches(MixedBatchSampler(PIXEL, TAG, 6, seed=9, start_step=30), 10) == full[30:]
    assert resumed.batch(5) == full[5]


def test_num_batches_defines_a_pass():
    sampler = MixedBatchSampler(PIXEL, TAG, 4, num_batches=6)
    assert len(sampler) == 6
    first, second = list(sampler), list(sampler)
    assert len(first) == len(second) == 6 and first != second
    assert first + second == _batches(MixedBatchSampler(PIXEL, TAG, 4), 12)
    with pytest.raises(TypeError):
        len(MixedBatchSampler(PIXEL, TAG, 4))


def test_empty_subset_fills_batch_from_the_other():
    assert all(len(b) == 4 and set(b) <= set(TAG) for b in _batches(MixedBatchSampler([], TAG, 4), 5))
    assert all(set(b) <= set(PIXEL) for b in _batches(MixedBatchSampler(PIXEL, [], 4), 5))
    with pytest.raises(ValueError):
        MixedBatchSampler([], [], 4)


def test_drives_a_dataloader():
    ds = SyntheticScenes(12, 64)
    pixel = [0, 1, 2]
    budgeted = ds.with_pixel_budget(pixel)
    sampler = MixedBatchSampler(pixel, list(range(3, 12)), 4, num_batches=3)
    batches = list(DataLoader(budgeted, batch_sampler=sampler))
    assert len(batches) == 3
    for batch in batches:
        assert batch["image"].shape == (4, 3, 64, 64) and batch["mask"].shape == (4, 64, 64)
        np.testing.assert_array_equal(batch["has_mask"].numpy(), [True, True, False, False])
        assert (batch["mask"][2:] == 255).all()
