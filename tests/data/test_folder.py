"""FolderDataset on tiny folders of real image, mask and CSV files."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from twdeploy.data.folder import FolderDataset, in_val
from twdeploy.errors import TwdeployError

H, W = 32, 48


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (H, W, 3), np.uint8))


def _mask(path: Path, ids: dict[int, tuple[slice, slice]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((H, W), np.uint8)
    for cls, region in ids.items():
        mask[region] = cls
    cv2.imwrite(str(path), mask)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "classes.txt").write_text("# my classes\nbackground\ncat\n\ndog\n")
    for i, name in enumerate(("a.png", "b.jpg", "c.JPG", "d.png", "e.jpg")):
        _image(tmp_path / "images" / name, i)
    (tmp_path / "images" / "e.jpg").write_bytes(b"garbage")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    _mask(tmp_path / "masks" / "a.png", {1: (slice(0, 10), slice(0, 10)), 255: (slice(10, 11), slice(None))})
    _mask(tmp_path / "masks" / "b.png", {2: (slice(5, 9), slice(5, 9))})
    _mask(tmp_path / "masks" / "d.png", {7: (slice(0, 4), slice(0, 4))})
    (tmp_path / "tags.csv").write_text("image,tags\nb.jpg,cat;dog\nc,dog\ne.jpg, cat \n")
    return tmp_path


def test_lists_images_masks_and_tags(root):
    ds = FolderDataset(root, val_fraction=0.0)
    assert ds.class_names == ["background", "cat", "dog"] and len(ds) == 5
    assert [p.name for p in ds.images] == ["a.png", "b.jpg", "c.JPG", "d.png", "e.jpg"]
    assert [ds.has_pixel_labels(i) for i in range(5)] == [True, True, False, True, False]
    tags = ds.tags_matrix()
    np.testing.assert_array_equal(tags[0], [True, True, False])  # from the mask
    np.testing.assert_array_equal(tags[1], [True, True, True])  # the CSV wins over the mask
    np.testing.assert_array_equal(tags[2], [True, False, True])  # CSV row by stem
    np.testing.assert_array_equal(tags[4], [True, True, False])
    item = ds[0]
    assert bool(item["has_mask"]) and set(np.unique(item["mask"].numpy())) == {0, 1, 255}
    tag_only = ds[2]
    assert not bool(tag_only["has_mask"]) and (tag_only["mask"] == 255).all()
    assert tag_only["image"].shape == (3, H, W)


def test_bad_items_are_skipped_with_a_warning(root, caplog):
    ds = FolderDataset(root, val_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        tags = ds.tags_matrix()
        assert not tags[3].any()
        assert "d.png" in caplog.text and "255 for ignore" in caplog.text
        assert ds[3]["index"] == 0  # d (bad ids) and e (corrupt) are skipped
    assert {3, 4} <= ds.bad_items and "e.jpg" in caplog.text
    assert ds[4]["index"] == 0  # wraps around to the next good item


def test_split_by_hash_is_deterministic_and_partitions(root):
    train = FolderDataset(root, "train", val_fraction=0.5)
    val = FolderDataset(root, "val", val_fraction=0.5)
    names = lambda ds: {p.name for p in ds.images}  # noqa: E731
    assert names(train) | names(val) == {"a.png", "b.jpg", "c.JPG", "d.png", "e.jpg"}
    assert not names(train) & names(val)
    assert names(val) == {p.name for p in val.images if in_val(p.stem, 0.5)}
    assert names(FolderDataset(root, "val", val_fraction=0.5)) == names(val)
    assert 0.2 < np.mean([in_val(f"img{i}", 0.3) for i in range(2000)]) < 0.4


def test_split_lists(root):
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a.png\nb\n")
    (root / "splits" / "val.txt").write_text("c.JPG\n")
    assert [p.name for p in FolderDataset(root, "train").images] == ["a.png", "b.jpg"]
    assert [p.name for p in FolderDataset(root, "val").images] == ["c.JPG"]
    with pytest.raises(TwdeployError, match=r"test\.txt"):
        FolderDataset(root, "test")


def test_missing_classes_txt(root):
    (root / "classes.txt").unlink()
    with pytest.raises(TwdeployError, match=r"classes\.txt") as err:
        FolderDataset(root)
    assert "\n" not in str(err.value)


def test_image_without_tags_or_mask(root):
    _image(root / "images" / "lonely.png", 9)
    with pytest.raises(TwdeployError, match=r"lonely\.png"):
        FolderDataset(root, val_fraction=0.0)


@pytest.mark.parametrize(
    ("csv", "match"),
    [
        ("image,tags\nb.jpg,cat;horse\n", "horse"),
        ("image,tags\nzzz.jpg,cat\n", "zzz.jpg"),
        ("name,labels\nb.jpg,cat\n", "image,tags"),
        ("image,tags\nb.jpg,cat\nb,dog\n", "one row"),
    ],
)
def test_bad_tags_csv(root, csv, match):
    (root / "tags.csv").write_text(csv)
    (root / "images" / "c.JPG").unlink()
    (root / "images" / "e.jpg").unlink()
    with pytest.raises(TwdeployError, match=match):
        FolderDataset(root, val_fraction=0.0)


def test_space_separated_tags(root):
    (root / "tags.csv").write_text('image,tags\nb.jpg,"dog  cat"\nc.JPG,\ne.jpg,cat\n')
    tags = FolderDataset(root, val_fraction=0.0).tags_matrix()
    np.testing.assert_array_equal(tags[1], [True, True, True])
    np.testing.assert_array_equal(tags[2], [True, False, False])  # empty field: background only
