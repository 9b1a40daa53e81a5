"""build_dataset: spec parsing, transforms, one-line errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from twdeploy.data import Normalization, build_dataset
from twdeploy.errors import TwdeployError


def test_synthetic_specs():
    train = build_dataset("synthetic:8", "train", 64, train=True)
    assert len(train) == 8 and train[0]["image"].shape == (3, 64, 64)
    assert len(build_dataset("synthetic:8", "val", 64, train=False)) == 2
    assert len(build_dataset("synthetic", "train", 64, train=False)) == 2000
    val = build_dataset("synthetic:8", "val", 64, train=False, seed=1)
    np.testing.assert_array_equal(val[1]["image"].numpy(), val[1]["image"].numpy())


def test_normalization_is_applied():
    norm = Normalization("meanstd")
    x = build_dataset("synthetic:4", "train", 64, train=False, norm=norm)[0]["image"]
    assert x.min() < 0


def test_folder_spec_resizes(tmp_path: Path):
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "x.png"), np.zeros((30, 50, 3), np.uint8))
    (tmp_path / "tags.csv").write_text("image,tags\nx.png,thing\n")
    ds = build_dataset(f"folder:{tmp_path}", "train", 64, train=True, val_fraction=0.0)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and (item["mask"] == 255).all()


@pytest.mark.parametrize(
    "spec", ["synthetic:many", "imagenet:/data", "voc:/does/not/exist", "folder:", "voc"]
)
def test_bad_specs_are_one_line_errors(spec):
    with pytest.raises(TwdeployError) as err:
        build_dataset(spec, "train", 64, train=True)
    assert "\n" not in str(err.value)
