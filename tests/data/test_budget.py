"""select_pixel_labelled: size, determinism, class balance."""

import numpy as np
import pytest

from twdeploy.data.budget import select_pixel_labelled, target_distribution


def _imbalanced_tags(n: int = 3000, k: int = 8, seed: int = 0) -> np.ndarray:
    """(n, 1 + k) tags: class j present with probability ~ 0.6 / (j + 1), background always."""
    rng = np.random.default_rng(seed)
    objects = rng.random((n, k)) < 0.6 / (np.arange(k) + 1)
    empty = ~objects.any(axis=1)
    objects[empty, rng.integers(0, k, empty.sum())] = True
    return np.concatenate([np.ones((n, 1), bool), objects], axis=1)


def _class_distribution(tags: np.ndarray) -> np.ndarray:
    counts = tags[:, 1:].sum(axis=0)
    return counts / counts.sum()


def _distance_to(tags: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(_class_distribution(tags) - target).sum())


def test_returns_sorted_unique_indices_deterministically():
    tags = _imbalanced_tags()
    chosen = select_pixel_labelled(tags, 50, seed=1)
    assert len(chosen) == 50 and len(np.unique(chosen)) == 50
    assert (np.diff(chosen) > 0).all() and chosen.dtype == np.int64
    np.testing.assert_array_equal(chosen, select_pixel_labelled(tags, 50, seed=1))
    assert not np.array_equal(chosen, select_pixel_labelled(tags, 50, seed=2))


def test_budget_covering_everything_returns_all():
    tags = _imbalanced_tags(30)
    np.testing.assert_array_equal(select_pixel_labelled(tags, 30), np.arange(30))
    np.testing.assert_array_equal(select_pixel_labelled(tags, 99), np.arange(30))
    assert select_pixel_labelled(tags, 0).size == 0


@pytest.mark.parametrize("n", [20, 100])
def test_small_budgets_are_closer_to_uniform_than_random(n):
    tags = _imbalanced_tags()
    uniform = np.full(8, 1 / 8)
    chosen = _distance_to(tags[select_pixel_labelled(tags, n)], uniform)
    rng = np.random.default_rng(0)
    random = np.mean(
        [_distance_to(tags[rng.choice(len(tags), n, replace=False)], uniform) for _ in range(30)]
    )
    assert chosen < 0.5 * random, (chosen, random)
    # every class is represented, even the rarest (~7% of images)
    assert tags[select_pixel_labelled(tags, n)][:, 1:].any(axis=0).all()


def test_alpha_moves_the_target_towards_the_empirical_distribution():
    tags = _imbalanced_tags()
    empirical = _class_distribution(tags)
    uniform = np.full(8, 1 / 8)
    half = tags[select_pixel_labelled(tags, 500)]  # default alpha 0.5 above 100
    target = target_distribution(tags[:, 1:].sum(axis=0).astype(float), 0.5)
    np.testing.assert_allclose(target, 0.5 * uniform + 0.5 * empirical)
    assert _distance_to(half, target) < _distance_to(half, uniform)
    assert _distance_to(half, target) < _distance_to(half, empirical)
    follows = tags[select_pixel_labelled(tags, 200, alpha=0.0)]
    assert _distance_to(follows, empirical) < _distance_to(follows, uniform)


def test_background_column_and_object_free_images_are_handled():
    tags = np.zeros((10, 4), bool)
    tags[:, 0] = True
    tags[:3, 1] = True
    tags[3, 2] = True
    chosen = select_pixel_labelled(tags, 6)
    assert {0, 3} & set(chosen.tolist()) and len(chosen) == 6
    assert 3 in select_pixel_labelled(tags, 2)  # the rare class comes first
