"""Choosing which images get pixel labels under a budget: a greedy class-balanced random draw.

Target class distribution over the object classes (background ignored):
`alpha * uniform + (1 - alpha) * empirical`. Each step takes the class with the largest open
share of that target (target minus what is already chosen, the total projected as the tags
chosen so far plus one per remaining pick), and draws at random among the remaining images
showing it, each weighted by the smallest open share among its classes, so images that also
show over-represented classes are rarely taken (method.md section 2; the reference's scheme).
"""

import numpy as np


def target_distribution(counts: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * uniform + (1 - alpha) * empirical, over the classes that occur at all."""
    present = counts > 0
    uniform = present / max(int(present.sum()), 1)
    empirical = counts / max(float(counts.sum()), 1.0)
    return alpha * uniform + (1.0 - alpha) * empirical


def select_pixel_labelled(tags: np.ndarray, n: int, seed: int = 0, alpha: float | None = None) -> np.ndarray:
    """Sorted unique indices of n rows of an (N, K) bool tag matrix (column 0 = background).

    alpha defaults to 1 for n <= 100 and 0.5 above; n >= N returns all rows.
    """
    tags = np.asarray(tags, dtype=bool)
    if tags.ndim != 2:
        raise ValueError(f"tags must be (N, K), got shape {tags.shape}")
    total = len(tags)
    if n >= total:
        return np.arange(total)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if alpha is None:
        alpha = 1.0 if n <= 100 else 0.5
    objects = tags[:, 1:]
    target = target_distribution(objects.sum(axis=0).astype(np.float64), alpha)
    rng = np.random.default_rng(seed)
    available = np.ones(total, dtype=bool)
    left_per_class = objects.sum(axis=0)
    chosen_counts = np.zeros(objects.shape[1])
    chosen: list[int] = []
    for step in range(n):
        projected = chosen_counts.sum() + (n - step)
        open_share = np.maximum(target * projected - chosen_counts, 0.0)
        open_share /= max(open_share.sum(), 1e-12)
        pick = _draw(rng, objects, available, left_per_class, open_share)
        chosen.append(pick)
        available[pick] = False
        left_per_class -= objects[pick]
        chosen_counts += objects[pick]
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _draw(
    rng: np.random.Generator,
    objects: np.ndarray,
    available: np.ndarray,
    left_per_class: np.ndarray,
    open_share: np.ndarray,
) -> int:
    """One index: among available images of the neediest class, weighted by their least-needed class."""
    score = np.where(left_per_class > 0, open_share, -1.0)
    if score.size == 0 or score.max() < 0:  # no image with an object left: any image
        return int(rng.choice(np.flatnonzero(available)))
    candidates = np.flatnonzero(available & objects[:, int(np.argmax(score))])
    weights = np.where(objects[candidates], open_share, np.inf).min(axis=1)
    if weights.sum() <= 0:
        return int(rng.choice(candidates))
    return int(rng.choice(candidates, p=weights / weights.sum()))
