"""Training and evaluation data: datasets, transforms, pixel-label budget, mixed batches.

Item contract (every dataset, after its transform): `ds[i]` is a dict with
  "image"    float32 tensor (3, H, W), scaled by a `Normalization` (default (uint8 + 1) / 256);
  "mask"     int64 tensor (H, W) of class ids, 255 = unknown / ignore; all 255 when the item is
             served without pixel labels;
  "tags"     float32 tensor (K,) multi-hot image-level tags of the whole (uncropped) image;
             index 0 (background) is 1 when background is present (always for tag-only items);
  "has_mask" bool tensor scalar: whether "mask" carries the item's pixel labels;
  "index"    int: the item actually returned. A bad item (unreadable image or mask, mask ids
             out of range) is skipped with one logged warning and the next good item is
             returned in its place, so "index" can differ from i.
Every dataset has `class_names: list[str]` (background first), `num_classes`, `__len__`,
`tags_matrix() -> (N, K) bool` (cached; for budget selection), `has_pixel_labels(i)`, and
`with_pixel_budget(indices)`: a copy that serves masks only for those items (the others as
tag-only items); the same is the `pixel_labelled: set[int] | None` attribute (None = all).
Batches stack with torch's default collate.

Dataset specs for `build_dataset`: `synthetic` (2000 train images, 500 for val / test),
`synthetic:N` (N train images, max(1, N // 4) for val / test), `voc:PATH`, `folder:PATH`.
"""

from pathlib import Path
from typing import Any

from twdeploy.data.base import SegmentationDataset
from twdeploy.data.budget import select_pixel_labelled
from twdeploy.data.folder import FolderDataset
from twdeploy.data.sampler import MixedBatchSampler
from twdeploy.data.synthetic import SyntheticScenes
from twdeploy.data.transforms import EvalTransform, Normalization, TrainTransform, to_input
from twdeploy.data.voc import VOCSegmentation
from twdeploy.errors import TwdeployError

__all__ = [
    "EvalTransform",
    "FolderDataset",
    "MixedBatchSampler",
    "Normalization",
    "SegmentationDataset",
    "SyntheticScenes",
    "TrainTransform",
    "VOCSegmentation",
    "build_dataset",
    "select_pixel_labelled",
    "to_input",
]

SYNTHETIC_DEFAULT_IMAGES = 2000


def build_dataset(
    spec: str,
    split: str,
    image_size: int,
    train: bool,
    norm: Normalization | None = None,
    **kw: Any,
) -> SegmentationDataset:
    """Dataset from a spec string with a train (augmenting) or eval (resizing) transform.

    Extra keyword arguments go to the dataset class (e.g. seed=, boundary=, val_fraction=).
    """
    norm = norm or Normalization()
    size = (image_size, image_size)
    transform = TrainTransform(size, norm) if train else EvalTransform(size, norm)
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        try:
            count = int(arg) if arg else SYNTHETIC_DEFAULT_IMAGES
        except ValueError:
            raise TwdeployError(
                f"dataset spec {spec!r}: N in synthetic:N must be an integer, e.g. synthetic:500"
            ) from None
        if split != "train":
            count = max(1, count // 4)
        return SyntheticScenes(count, image_size=image_size, split=split, transform=transform, **kw)
    if kind in ("voc", "folder"):
        root = Path(arg).expanduser()
        if not arg or not root.is_dir():
            raise TwdeployError(
                f"dataset spec {spec!r}: folder {arg!r} is missing; give {kind}:PATH of an existing folder"
            )
        dataset_cls = VOCSegmentation if kind == "voc" else FolderDataset
        return dataset_cls(root, split=split, transform=transform, **kw)
    raise TwdeployError(
        f"dataset spec {spec!r} is unknown; use synthetic, synthetic:N, voc:PATH or folder:PATH"
    )
