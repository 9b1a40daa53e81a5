"""VOCSegmentation on a tiny VOC 2012 tree written with real JPEG, palette PNG and XML files."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from twdeploy.data.voc import VOC_CLASSES, VOCSegmentation
from twdeploy.errors import TwdeployError

H, W = 40, 56


def _palette_png(path: Path, mask: np.ndarray) -> None:
    """Palette PNG whose colours differ from the indices (index 1 is (128, 0, 0) as in VOC)."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[1:21] = [(128, 0, 0)] + [(17 * i % 256, 40, 200) for i in range(2, 21)]
    palette[255] = (224, 224, 192)
    img.putpalette(palette.ravel().tolist())
    img.save(path)


def _xml(path: Path, names: list[str]) -> None:
    objects = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in names)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objects}</annotation>")


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b", "d", "e", "f"):
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), rng.integers(0, 255, (H, W, 3), np.uint8))
    (root / "JPEGImages" / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    masks = {
        "a": {
            0: (slice(None), slice(None)),
            1: (slice(0, 10), slice(0, 10)),
            15: (slice(20, 30), slice(20, 40)),
        },
        "b": {0: (slice(None), slice(None)), 12: (slice(5, 35), slice(5, 25))},
        "c": {0: (slice(None), slice(None))},
        "d": {0: (slice(None), slice(None)), 7: (slice(0, 20), slice(0, 56))},
    }
    for name, regions in masks.items():
        mask = np.zeros((H, W), np.uint8)
        for cls, region in regions.items():
            mask[region] = cls
        mask[19, :] = 255  # a boundary line
        _palette_png(root / "SegmentationClass" / f"{name}.png", mask)
        _xml(root / "Annotations" / f"{name}.xml", ["cat"])
    _xml(root / "Annotations" / "e.xml", ["dog", "person", "dog"])
    _xml(root / "Annotations" / "f.xml", [])
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("d\n")
    (root / "ImageSets/Main/train.txt").write_text("a\ne\nf\nd\n")
    (root / "ImageSets/Main/val.txt").write_text("d\n")
    return root


def test_lists_masked_then_tag_only_images(voc):
    ds = VOCSegmentation(voc)
    assert ds.class_names == list(VOC_CLASSES) and ds.num_classes == 21
    assert len(ds) == 5  # a b c with masks; e f tag-only; d is a segmentation val image
    assert [ds.has_pixel_labels(i) for i in range(5)] == [True, True, True, False, False]
    assert len(VOCSegmentation(voc, split="val")) == 1
    assert len(VOCSegmentation(voc, tag_only_images=False)) == 3


def test_reads_palette_indices_and_boundary(voc):
    ds = VOCSegmentation(voc)
    item = ds[0]
    mask = item["mask"].numpy()
    assert set(np.unique(mask)) == {0, 1, 15, 255}  # indices, not colours or gray values
    assert (mask[19] == 255).all() and (mask[:10, :10] == 1).all()
    assert item["image"].shape == (3, H, W)
    as_bg = VOCSegmentation(voc, boundary="background")[0]["mask"].numpy()
    assert set(np.unique(as_bg)) == {0, 1, 15} and (as_bg[19] == 0).all()


def test_tags_from_masks_and_xml(voc, caplog):
    ds = VOCSegmentation(voc)
    idx = {n: i for i, n in enumerate(VOC_CLASSES)}
    with caplog.at_level(logging.WARNING):
        tags = ds.tags_matrix()
    assert tags.shape == (5, 21)
    assert set(np.flatnonzero(tags[0])) == {0, idx["aeroplane"], idx["person"]}  # mask, not a.xml's "cat"
    assert set(np.flatnonzero(tags[1])) == {0, idx["dog"]}
    assert set(np.flatnonzero(tags[3])) == {0, idx["dog"], idx["person"]}
    assert set(np.flatnonzero(tags[4])) == {0}
    tag_only = ds[3]
    assert not bool(tag_only["has_mask"]) and (tag_only["mask"] == 255).all()
    np.testing.assert_array_equal(tag_only["tags"].numpy().astype(bool), tags[3])


def test_corrupt_jpeg_is_skipped_with_a_warning(voc, caplog):
    ds = VOCSegmentation(voc)
    with caplog.at_level(logging.WARNING, logger="twdeploy.data.base"):
        item = ds[2]
    assert item["index"] == 3
    assert ds.bad_items == {2}
    assert "c.jpg" in caplog.text and "re-save" in caplog.text
    caplog.clear()
    assert ds[2]["index"] == 3 and not caplog.text  # warned once


def test_root_forms_and_errors(voc, tmp_path):
    assert len(VOCSegmentation(voc.parent)) == 5  # the VOCdevkit folder works too
    with pytest.raises(TwdeployError, match="JPEGImages"):
        VOCSegmentation(tmp_path / "nowhere")
    with pytest.raises(TwdeployError, match=r"trainval\.txt"):
        VOCSegmentation(voc, split="trainval")
    with pytest.raises(TwdeployError):
        VOCSegmentation(voc, boundary="drop")


def test_mask_of_wrong_size_is_a_bad_item(voc, caplog):
    _palette_png(voc / "SegmentationClass" / "b.png", np.zeros((H // 2, W), np.uint8))
    ds = VOCSegmentation(voc)
    with caplog.at_level(logging.WARNING):
        assert ds[1]["index"] == 3  # b (bad size) and c (corrupt) are skipped
    assert ds.bad_items == {1, 2} and "b.png" in caplog.text
