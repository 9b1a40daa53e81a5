"""A plain folder of images with optional masks and/or image-level tags.

Layout::

    root/
      classes.txt          required: one class name a line, background first (blank lines and
                           lines starting with '#' are skipped); names hold no spaces or ';'
      images/              the images: .jpg .jpeg .png .bmp .tif .tiff .webp (any case)
      masks/<stem>.png     optional, per image: single-channel PNG (palette index or gray value)
                           of class ids in classes.txt order, 255 = ignore, same size as the image
      tags.csv             optional: UTF-8 CSV with the header `image,tags`; `image` is a file
                           name in images/ (or its stem), `tags` the class names present,
                           separated by ';' and/or spaces (e.g. `cat;dog` or `cat dog`). An
                           empty field means "no object". Background is always tagged.
      splits/<split>.txt   optional: the image file names (or stems) of a split, one a line

Tags come from tags.csv where the image has a row, else from its mask. An image with neither
is an error. Without splits/, "train" and "val" are a deterministic split by a hash of the
file stem (`val_fraction` of the images go to val).
"""

import csv
import hashlib
import io
import re
from pathlib import Path

import numpy as np

from twdeploy.data.base import Loaded, SegmentationDataset
from twdeploy.data.imageio import IMAGE_SUFFIXES, check_ids, check_mask, read_label_png, read_rgb, tags_from_mask
from twdeploy.data.transforms import Transform
from twdeploy.errors import TwdeployError

_SEPARATORS = re.compile(r"[;\s]+")


def read_utf8(path: Path) -> str:
    """A text file's content; a one-line error when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TwdeployError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8"
        ) from None


def read_classes(path: Path) -> list[str]:
    """Class names of classes.txt, background first."""
    if not path.is_file():
        raise TwdeployError(f"{path}: missing; write one class name per line, background first")
    lines = (line.strip() for line in read_utf8(path).splitlines())
    names = [s for s in lines if s and s[0] != "#"]
    bad = [n for n in names if _SEPARATORS.search(n)]
    if bad:
        raise TwdeployError(f"{path}: class names {bad} contain spaces or ';'; use e.g. underscores")
    if len(names) < 2 or len(set(names)) != len(names):
        raise TwdeployError(f"{path}: needs at least 2 distinct class names (background first), got {names}")
    return names


def in_val(stem: str, val_fraction: float) -> bool:
    """Deterministic hash split: whether an image with this stem belongs to val."""
    digest = hashlib.sha1(stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def _read_tags_csv(path: Path, classes: list[str], images: dict[str, Path]) -> dict[str, np.ndarray]:
    """Tags per image file name from tags.csv."""
    index = {name: i for i, name in enumerate(classes)}
    stems = _stem_map(images)
    tags: dict[str, np.ndarray] = {}
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "tags"} <= set(reader.fieldnames):
            raise TwdeployError(f"{path}: needs the header line `image,tags`")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            key = (row["image"] or "").strip()
            image = images.get(key) or images.get(stems.get(key, ""))
            if image is None:
                raise TwdeployError(f"{where}: no image {key!r} in images/; fix the name or delete the row")
            names = [n for n in _SEPARATORS.split(row["tags"] or "") if n]
            unknown = sorted(set(names) - set(index))
            if unknown:
                raise TwdeployError(f"{where}: unknown class names {unknown}; use names from classes.txt")
            if image.name in tags:
                raise TwdeployError(f"{where}: second row for {image.name}; keep one row per image")
            row_tags = np.zeros(len(classes), dtype=bool)
            row_tags[[0, *(index[n] for n in names)]] = True
            tags[image.name] = row_tags
    return tags


def _stem_map(images: dict[str, Path]) -> dict[str, str]:
    return {p.stem: name for name, p in images.items()}


class FolderDataset(SegmentationDataset):
    """Images in root/images with masks, tags.csv or both (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        val_fraction: float = 0.1,
    ) -> None:
        self.root = Path(root)
        classes = read_classes(self.root / "classes.txt")
        super().__init__(classes, transform, name=f"folder:{self.root} ({split})")
        all_images = self._list_images()
        chosen = self._split(all_images, split, val_fraction)
        csv_path = self.root / "tags.csv"
        self.csv_tags = _read_tags_csv(csv_path, classes, all_images) if csv_path.is_file() else {}
        self.images = [all_images[name] for name in chosen]
        for image in self.images:
            if image.name not in self.csv_tags and not self._mask_path(image).is_file():
                raise TwdeployError(
                    f"{image}: has neither a mask ({self._mask_path(image)}) nor a row in {csv_path}; add one"
                )

    def _list_images(self) -> dict[str, Path]:
        folder = self.root / "images"
        candidates = folder.glob("*") if folder.is_dir() else []
        files = sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TwdeployError(f"{folder}: no images found; put .jpg/.png files in {folder}")
        stems: dict[str, Path] = {}
        for p in files:
            if p.stem in stems:
                raise TwdeployError(
                    f"{p}: same stem as {stems[p.stem]}, so masks/<stem>.png is ambiguous; rename one"
                )
            stems[p.stem] = p
        return {p.name: p for p in files}

    def _split(self, images: dict[str, Path], split: str, val_fraction: float) -> list[str]:
        splits = self.root / "splits"
        if splits.is_dir():
            listing = splits / f"{split}.txt"
            if not listing.is_file():
                raise TwdeployError(
                    f"{listing}: split list missing; add it or use a split listed in {splits}"
                )
            stems = _stem_map(images)
            names = []
            lines = (line.strip() for line in read_utf8(listing).splitlines())
            for entry in filter(None, lines):
                name = entry if entry in images else stems.get(entry)
                if name is None:
                    raise TwdeployError(f"{listing}: no image {entry!r} in images/; fix or delete the line")
                names.append(name)
            return list(dict.fromkeys(names))
        if split not in ("train", "val"):
            raise TwdeployError(
                f"{self.root}: split {split!r} needs splits/{split}.txt; without splits/ use train or val"
            )
        return [n for n, p in images.items() if in_val(p.stem, val_fraction) == (split == "val")]

    def __len__(self) -> int:
        return len(self.images)

    def _mask_path(self, image: Path) -> Path:
        return self.root / "masks" / f"{image.stem}.png"

    def _has_mask(self, i: int) -> bool:
        return self._mask_path(self.images[i]).is_file()

    def _read_tags(self, i: int) -> np.ndarray:
        image = self.images[i]
        if image.name in self.csv_tags:
            return self.csv_tags[image.name]
        path = self._mask_path(image)
        return tags_from_mask(check_ids(read_label_png(path), self.num_classes, path), self.num_classes)

    def _load(self, i: int) -> Loaded:
        image = self.images[i]
        rgb = read_rgb(image)
        tags, mask = self.csv_tags.get(image.name), None
        if tags is None or self._has_mask(i):  # an image without a CSV row must have a mask
            path = self._mask_path(image)
            mask = check_mask(read_label_png(path), self.num_classes, path, rgb.shape)
            if tags is None:
                tags = tags_from_mask(mask, self.num_classes)
        return rgb, mask, tags
