"""The Python API on a freshly built tiny model: load, predict (files, arrays, PIL, tensors), val, export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import twdeploy
from tests.inference.tiny_model import CLASS_NAMES, IMAGE_SIZE, build_run, write_mixed_folder
from twdeploy.data.transforms import Normalization, to_input
from twdeploy.errors import TwdeployError
from twdeploy.runtime import open_backend


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("tiny"))


def test_ten_lines_stream_a_folder_through_an_exported_model(tiny_run, tmp_path):
    good = write_mixed_folder(tmp_path / "images")
    model = twdeploy.load(tiny_run[1], device="cpu")
    seen = {}
    for result in model.predict(tmp_path / "images", stream=True, batch=3):
        seen[result.name] = result
    assert set(seen) == set(good)  # the corrupt, empty and text files are skipped
    for name, (h, w) in good.items():
        result = seen[name]
        assert result.mask.shape == (h, w) and result.orig_img.shape == (h, w, 3)
        assert result.tag_probs.shape == (len(CLASS_NAMES),)
        assert result.heatmaps.shape == (len(CLASS_NAMES), *IMAGE_SIZE)
        assert set(result.speed) == {"decode", "preprocess", "inference", "postprocess"}
    rgb = cv2.imread(str(tmp_path / "images" / "a.png"))[:, :, ::-1]
    tensor = to_input(np.ascontiguousarray(rgb), IMAGE_SIZE, Normalization.from_dict(model.card.normalization))
    logits = open_backend(tiny_run[1], device="cpu").infer(tensor[None]).logits
    np.testing.assert_allclose(seen["a"].tag_probs, 1 / (1 + np.exp(-logits[0])), rtol=1e-5, atol=1e-6)


def test_arrays_pil_and_tensors_segment_like_the_file(tiny_run, tmp_path):
    bgr = np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), bgr)
    model = twdeploy.load(tiny_run[0], device="cpu")
    (from_file,) = model.predict(tmp_path / "x.png")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255
    results = model.predict([bgr, Image.fromarray(rgb), tensor])
    assert [r.name for r in results] == ["image0", "image1", "image2"]
    for result in results:
        np.testing.assert_array_equal(result.orig_img, bgr)
        np.testing.assert_array_equal(result.mask, from_file.mask)
        np.testing.assert_allclose(result.tag_probs, from_file.tag_probs, rtol=1e-6)
    batched = model.predict(torch.stack([tensor, tensor]), batch=2)
    assert len(batched) == 2 and all((r.mask == from_file.mask).all() for r in batched)


def test_torch_and_onnx_models_agree(tiny_run, tmp_path):
    write_mixed_folder(tmp_path / "images")
    torch_results = twdeploy.load(tiny_run[0], device="cpu").predict(tmp_path / "images")
    onnx_results = twdeploy.load(tiny_run[1], device="cpu").predict(tmp_path / "images")
    for a, b in zip(torch_results, onnx_results, strict=True):
        assert a.name == b.name and (a.mask == b.mask).mean() > 0.99
        np.testing.assert_allclose(a.tag_probs, b.tag_probs, atol=1e-4)


def test_result_plot_save_and_json(tiny_run, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    (result,) = twdeploy.load(tiny_run[1], device="cpu").predict(image)
    assert result.plot().shape == (30, 40, 3)
    record = result.to_dict()
    assert set(record["tag_probs"]) == set(CLASS_NAMES) and record["width"] == 40
    assert abs(sum(c["fraction"] for c in record["classes"]) - 1) < 1e-5
    assert twdeploy.SegmentResult is type(result)
    out = result.save(tmp_path / "saved")
    assert (out / "masks" / "image0.png").is_file() and (out / "overlays" / "image0.jpg").is_file()
    line = (out / "results.jsonl").read_text().strip()
    assert '"tag_probs"' in line and result.to_json().startswith("{")


def _folder_dataset(root: Path) -> str:
    """A folder dataset with the tiny model's classes: discs and squares on black, with masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    rng = np.random.default_rng(0)
    names = []
    for i in range(6):
        image = np.zeros((64, 64, 3), np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        x, y = (int(v) for v in rng.integers(8, 40, 2))
        if i % 2:
            cv2.circle(image, (x + 8, y + 8), 8, (255, 255, 255), -1)
            cv2.circle(mask, (x + 8, y + 8), 8, 1, -1)
        else:
            cv2.rectangle(image, (x, y), (x + 16, y + 16), (255, 255, 255), -1)
            cv2.rectangle(mask, (x, y), (x + 16, y + 16), 2, -1)
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
        names.append(str(i))
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("\n".join(names) + "\n")
    (root / "splits" / "train.txt").write_text("\n".join(names) + "\n")
    return f"folder:{root}"


def test_val_is_the_same_on_torch_and_onnx(tiny_run, tmp_path):
    data = _folder_dataset(tmp_path / "data")
    on_torch = twdeploy.load(tiny_run[0], device="cpu").val(data, batch=4)
    on_onnx = twdeploy.load(tiny_run[1], device="cpu").val(data, batch=4)
    assert on_torch.images == on_onnx.images == 6
    assert abs(on_torch.miou - on_onnx.miou) < 1e-3 and abs(on_torch.f1 - on_onnx.f1) < 1e-6


def test_export_from_python(tiny_run, tmp_path):
    report = twdeploy.load(tiny_run[0], device="cpu").export(out=str(tmp_path / "export"), batch=2, topk=1)
    assert report.passed and (tmp_path / "export" / "model.onnx").is_file()
    with twdeploy.load(tmp_path / "export" / "model.onnx", device="cpu") as exported:
        assert exported.card.topk == 1 and exported.runtime.name == "onnxruntime"
        with pytest.raises(TwdeployError, match="only a run folder"):
            exported.export()


def test_bad_sources_and_options_are_one_line_errors(tiny_run):
    model = twdeploy.load(tiny_run[1], device="cpu")
    with pytest.raises(TwdeployError, match="not a source") as info:
        model.predict({"not": "an image"})
    assert "\n" not in str(info.value)
    with pytest.raises(TwdeployError, match="no such file"):
        model.predict("does/not/exist.png")
    with pytest.raises(TwdeployError, match="unknown option"):
        twdeploy.train(nonsense=1)
    assert model.predict([np.zeros((4, 4, 5), np.uint8), np.zeros((8, 8), np.uint16)]) != []
