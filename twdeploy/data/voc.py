"""PASCAL VOC 2012 segmentation data (the official VOCdevkit/VOC2012 layout).

Items are the images of `ImageSets/Segmentation/<split>.txt` (with masks from
`SegmentationClass/<id>.png`, palette index = class id, 255 = boundary) followed, for the
train split by default, by the extra images of `ImageSets/Main/<split>.txt` that have no
mask (image-level tags from `Annotations/<id>.xml`). Images of the segmentation val list are
never used as extra train images. Tags of masked images come from the mask itself; tag-only
images get the background tag.
"""

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np

from twdeploy.data.base import Loaded, SegmentationDataset
from twdeploy.data.imageio import IGNORE, check_ids, check_mask, read_label_png, read_rgb, tags_from_mask
from twdeploy.data.transforms import Transform
from twdeploy.errors import BadItemError, TwdeployError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(VOC_CLASSES)}


def _read_ids(path: Path) -> list[str]:
    """Image ids of an ImageSets list (first token of each non-empty line)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _resolve_root(root: Path) -> Path:
    """Accept the VOC2012 folder or a VOCdevkit folder holding it."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise TwdeployError(
        f"{root}: no JPEGImages/ folder; point voc:PATH at VOC2012/ (the folder holding JPEGImages/, "
        "SegmentationClass/, Annotations/ and ImageSets/)"
    )


class VOCSegmentation(SegmentationDataset):
    """VOC 2012, 21 classes; `boundary` decides whether mask value 255 is ignored or background."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        boundary: Literal["ignore", "background"] = "ignore",
        tag_only_images: bool | None = None,
    ) -> None:
        self.root = _resolve_root(Path(root))
        if boundary not in ("ignore", "background"):
            raise TwdeployError(f"VOC boundary option {boundary!r} is unknown; use 'ignore' or 'background'")
        seg_list = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not seg_list.is_file():
            raise TwdeployError(f"{seg_list}: split list missing; use split train or val, or add the list")
        super().__init__(VOC_CLASSES, transform, name=f"voc:{self.root} ({split})")
        self.boundary = boundary
        self.masked_ids = _read_ids(seg_list)
        self.tag_ids: list[str] = []
        main_list = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if (split == "train" if tag_only_images is None else tag_only_images) and main_list.is_file():
            val_list = self.root / "ImageSets" / "Segmentation" / "val.txt"
            exclude = set(self.masked_ids) | (set(_read_ids(val_list)) if val_list.is_file() else set())
            self.tag_ids = [i for i in dict.fromkeys(_read_ids(main_list)) if i not in exclude]

    def __len__(self) -> int:
        return len(self.masked_ids) + len(self.tag_ids)

    def _image_id(self, i: int) -> str:
        n = len(self.masked_ids)
        return self.masked_ids[i] if i < n else self.tag_ids[i - n]

    def _has_mask(self, i: int) -> bool:
        return i < len(self.masked_ids)

    def _mask_path(self, i: int) -> Path:
        return self.root / "SegmentationClass" / f"{self._image_id(i)}.png"

    def _read_mask(self, i: int, image_shape: tuple[int, ...] | None) -> np.ndarray:
        path = self._mask_path(i)
        if not path.is_file():
            raise BadItemError(f"{path}: mask missing; restore it or drop the id from the split list")
        raw = read_label_png(path)
        mask = (
            check_ids(raw, self.num_classes, path)
            if image_shape is None
            else check_mask(raw, self.num_classes, path, image_shape)
        )
        if self.boundary == "background":
            mask[mask == IGNORE] = 0
        return mask

    def _xml_tags(self, i: int) -> np.ndarray:
        path = self.root / "Annotations" / f"{self._image_id(i)}.xml"
        try:
            names = [(obj.findtext("name") or "").strip() for obj in ET.parse(path).getroot().iter("object")]
        except (OSError, ET.ParseError) as err:
            raise BadItemError(f"{path}: unreadable annotation ({err}); restore it or drop the id") from err
        unknown = sorted(set(names) - set(_INDEX))
        if unknown:
            raise BadItemError(f"{path}: unknown class names {unknown}; use VOC class names")
        tags = np.zeros(self.num_classes, dtype=bool)
        tags[[0, *(_INDEX[n] for n in names)]] = True
        return tags

    def _read_tags(self, i: int) -> np.ndarray:
        if self._has_mask(i):
            return tags_from_mask(self._read_mask(i, None), self.num_classes)
        return self._xml_tags(i)

    def _load(self, i: int) -> Loaded:
        rgb = read_rgb(self.root / "JPEGImages" / f"{self._image_id(i)}.jpg")
        if not self._has_mask(i):
            return rgb, None, self._xml_tags(i)
        mask = self._read_mask(i, rgb.shape)
        return rgb, mask, tags_from_mask(mask, self.num_classes)
