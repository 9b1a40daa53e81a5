"""The base class every dataset shares: item contract, pixel budget, bad-item skipping."""

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
import torch
from torch.utils.data import Dataset

from twdeploy.data.imageio import IGNORE
from twdeploy.data.transforms import EvalTransform, Transform
from twdeploy.errors import BadItemError, TwdeployError

logger = logging.getLogger(__name__)

Loaded = tuple[np.ndarray, np.ndarray | None, np.ndarray]
"""(HxWx3 uint8 RGB, HxW uint8 mask or None, (K,) bool tags) for one item before transform."""


def _item_rng() -> np.random.Generator:
    """A numpy Generator drawn from torch's RNG, so torch.manual_seed and DataLoader worker seeding apply."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class SegmentationDataset(Dataset[dict[str, Any]], ABC):
    """Implements the item contract of `twdeploy.data` on top of `_load` / `_has_mask`."""

    def __init__(self, class_names: Sequence[str], transform: Transform | None, name: str) -> None:
        self.class_names = list(class_names)
        self.transform = transform or EvalTransform()
        self.name = name
        self.pixel_labelled: set[int] | None = None
        self.bad_items: set[int] = set()
        self._tags: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        """K, background included."""
        return len(self.class_names)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _has_mask(self, i: int) -> bool:
        """Whether item i comes with a pixel label at all (budget not applied)."""

    @abstractmethod
    def _load(self, i: int) -> Loaded:
        """Read item i; raise `BadItemError` if it cannot be used."""

    def _read_tags(self, i: int) -> np.ndarray:
        """(K,) bool tags of item i; subclasses override with something cheaper than `_load`."""
        return self._load(i)[2]

    def has_pixel_labels(self, i: int) -> bool:
        """Whether item i is served with its mask (it has one and is inside the pixel budget)."""
        return self._has_mask(i) and (self.pixel_labelled is None or i in self.pixel_labelled)

    def with_pixel_budget(self, indices: Iterable[int]) -> Self:
        """A shallow copy serving masks only for `indices`; all others come as tag-only items."""
        chosen = {int(i) for i in indices}
        missing = sorted(i for i in chosen if not self._has_mask(i))
        if missing:
            raise ValueError(f"items {missing[:10]} have no pixel labels and cannot be in the budget")
        budgeted = copy.copy(self)
        budgeted.pixel_labelled = chosen
        return budgeted

    def tags_matrix(self) -> np.ndarray:
        """(N, K) bool image-level tags of all items (cached); bad items get a zero row."""
        if self._tags is None:
            tags = np.zeros((len(self), self.num_classes), dtype=bool)
            for i in range(len(self)):
                try:
                    tags[i] = self._read_tags(i)
                except BadItemError as err:
                    self._mark_bad(i, err)
            self._tags = tags
        return self._tags.copy()

    def _mark_bad(self, i: int, err: BadItemError) -> None:
        if i not in self.bad_items:
            self.bad_items.add(i)
            logger.warning("skipping item %d of %s: %s", i, self.name, err)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item `index`; a bad item is skipped (warned once) and the next good one is returned instead."""
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        for offset in range(n):
            j = (index + offset) % n
            if j in self.bad_items:
                continue
            try:
                return self._item(j)
            except BadItemError as err:
                self._mark_bad(j, err)
        raise TwdeployError(
            f"{self.name}: no readable item at all; fix the files named in the warnings above"
        )

    def _item(self, i: int) -> dict[str, Any]:
        rgb, mask, tags = self._load(i)
        has_mask = mask is not None and self.has_pixel_labels(i)
        if not has_mask:
            mask = np.full(rgb.shape[:2], IGNORE, dtype=np.uint8)
        image, labels = self.transform(rgb, mask, _item_rng())
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(labels),
            "tags": torch.from_numpy(tags.astype(np.float32)),
            "has_mask": torch.tensor(has_mask),
            "index": i,
        }
