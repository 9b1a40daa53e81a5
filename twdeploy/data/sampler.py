"""Batches that mix pixel-labelled and tag-only images in a fixed share.

Each subset is walked through in its own endless sequence of permutations (a fresh one each
time the subset is exhausted); batch `s` takes the next `n_pixel` pixel-labelled and `n_tag`
tag-only items of those sequences (pixel-labelled first). Permutation `e` of a subset comes
from `(seed, subset, e)` alone, so any batch is computed directly from its step number:
resuming is `load_state_dict({"step": s})` (or `MixedBatchSampler(..., start_step=s)`), and
the batches from there on equal those of an uninterrupted run.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

_PIXEL, _TAG = 0, 1


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of round(batch_size * pixel_share) pixel-labelled items, the rest tag-only.

    If one subset is empty the whole batch comes from the other. `num_batches` is the length
    of one pass (`__len__`); None makes iteration endless. `step` counts the batches yielded
    so far over all passes. A DataLoader prefetches batches, so the trainer should store its
    own step count and restore with `load_state_dict({"step": trainer_step})`.
    """

    def __init__(
        self,
        pixel_indices: Sequence[int],
        tag_indices: Sequence[int],
        batch_size: int,
        pixel_share: float = 0.5,
        seed: int = 0,
        num_batches: int | None = None,
        start_step: int = 0,
    ) -> None:
        self.subsets = (np.asarray(pixel_indices, dtype=np.int64), np.asarray(tag_indices, dtype=np.int64))
        if batch_size < 1 or not 0.0 <= pixel_share <= 1.0:
            raise ValueError(
                f"need batch_size >= 1 and pixel_share in [0, 1], got {batch_size}, {pixel_share}"
            )
        if not any(len(s) for s in self.subsets):
            raise ValueError("both pixel_indices and tag_indices are empty")
        n_pixel = round(batch_size * pixel_share)
        if not len(self.subsets[_TAG]):
            n_pixel = batch_size
        elif not len(self.subsets[_PIXEL]):
            n_pixel = 0
        self.counts = (n_pixel, batch_size - n_pixel)
        self.seed, self.num_batches, self.step = seed, num_batches, start_step
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, subset: int, epoch: int) -> np.ndarray:
        key = (subset, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            rng = np.random.default_rng([self.seed, subset, epoch])
            self._perms[key] = rng.permutation(self.subsets[subset])
        return self._perms[key]

    def _take(self, subset: int, start: int, count: int) -> list[int]:
        size = len(self.subsets[subset])
        return [int(self._permutation(subset, p // size)[p % size]) for p in range(start, start + count)]

    def batch(self, step: int) -> list[int]:
        """The indices of batch `step` (pure: no state is changed)."""
        n_pixel, n_tag = self.counts
        return self._take(_PIXEL, step * n_pixel, n_pixel) + self._take(_TAG, step * n_tag, n_tag)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield batches from `step` to the end of the current pass (endless if num_batches is None)."""
        while True:
            batch = self.batch(self.step)
            self.step += 1
            yield batch
            if self.num_batches is not None and self.step % self.num_batches == 0:
                return

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("endless MixedBatchSampler has no length; pass num_batches")
        return self.num_batches

    def state_dict(self) -> dict[str, Any]:
        """The position: batches yielded so far."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at `state["step"]`."""
        self.step = int(state["step"])
