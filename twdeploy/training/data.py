"""Training and validation data for a run: pixel budget, mixed batches, step-seeded augmentation.

Augmentation of the item at position ``p`` of batch ``s`` is seeded from ``(seed, s, p)`` alone,
so the batches of a resumed run equal those of an uninterrupted one, whatever the worker count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from twdeploy.data import MixedBatchSampler, SegmentationDataset, build_dataset, select_pixel_labelled
from twdeploy.errors import TwdeployError
from twdeploy.training.config import TrainConfig
from twdeploy.training.init import input_normalization

logger = logging.getLogger(__name__)


class StepSeeded(Dataset[dict[str, Any]]):
    """Serves ``(step, position, index)`` keys: item ``index`` under a torch seed derived from the key."""

    def __init__(self, dataset: SegmentationDataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        step, position, index = key
        item_seed = int(np.random.SeedSequence([self.seed, step, position]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            return self.dataset[index]


class StepBatches(Sampler[list[tuple[int, int, int]]]):
    """Endless keyed batches of a ``MixedBatchSampler`` from ``start`` on; ``share`` keeps this rank's part."""

    def __init__(self, mixed: MixedBatchSampler, start: int = 0, share: Callable[[list], list] = list) -> None:
        self.mixed, self.start, self.share = mixed, start, share

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start
        while True:
            yield self.share([(step, p, i) for p, i in enumerate(self.mixed.batch(step))])
            step += 1


@dataclass
class RunData:
    """The datasets of a run and how the training set is split by the pixel budget."""

    train: SegmentationDataset
    val: SegmentationDataset
    pixel_indices: np.ndarray
    tag_indices: np.ndarray

    @property
    def class_names(self) -> list[str]:
        """Class names, background first."""
        return self.train.class_names


def build_run_data(cfg: TrainConfig) -> RunData:
    """Train split with the pixel budget applied, val split (first ``val_images`` items)."""
    norm = input_normalization(cfg.arch, cfg.normalization)
    train = build_dataset(cfg.data, "train", cfg.image_size, train=True, norm=norm)
    val = build_dataset(cfg.data, "val", cfg.image_size, train=False, norm=norm)
    if train.num_classes != val.num_classes:
        raise TwdeployError(f"{cfg.data}: train and val splits have different class lists; fix the dataset")
    if len(train) == 0 or len(val) == 0:
        raise TwdeployError(f"{cfg.data}: the train or val split is empty; add images or change --data")
    labelled = np.array([i for i in range(len(train)) if train.has_pixel_labels(i)], dtype=np.int64)
    if cfg.stage != "classify" and cfg.pixel_labels is not None and cfg.pixel_labels > len(labelled):
        logger.warning(
            "--pixel-labels %d: only %d training images have masks in %s; using those %d",
            cfg.pixel_labels, len(labelled), cfg.data, len(labelled),
        )
    if cfg.stage == "classify":  # tags only: every image is a tag image
        chosen = labelled[:0]
    elif cfg.pixel_labels is None:
        chosen = labelled
    else:
        tags = train.tags_matrix()[labelled]
        chosen = labelled[select_pixel_labelled(tags, cfg.pixel_labels, seed=cfg.seed)]
    train = train.with_pixel_budget(chosen.tolist())
    rest = np.setdiff1d(np.arange(len(train)), chosen)
    tag_only = rest if cfg.tag_weight > 0 else rest[:0]  # without the tag loss, tag-only images teach nothing
    if not len(chosen) and not len(tag_only):
        raise TwdeployError(
            "no training signal: no pixel-labelled images and no tag loss (--w-cls 0 or --model unet); "
            "raise --pixel-labels"
        )
    if cfg.val_images is not None and cfg.val_images < len(val):
        val = Subset(val, range(cfg.val_images))  # type: ignore[assignment]
    for split in (train, val):
        split[0]  # the first readable item, or a one-line error now rather than after all steps
    return RunData(train, val, chosen, tag_only)


def train_loader(
    data: RunData, cfg: TrainConfig, start_step: int, share: Callable[[list], list] = list
) -> DataLoader:
    """Endless loader of mixed global batches starting at ``start_step``, each cut to this process's ``share``."""
    mixed = MixedBatchSampler(data.pixel_indices, data.tag_indices, cfg.global_batch, cfg.pixel_share, cfg.seed)
    return DataLoader(
        StepSeeded(data.train, cfg.seed),
        batch_sampler=StepBatches(mixed, start_step, share),
        num_workers=cfg.workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False,
    )


def eval_loader(dataset: Dataset, batch_size: int, workers: int = 0) -> DataLoader:
    """Sequential loader for evaluation."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
