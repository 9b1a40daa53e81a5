"""``max_memory`` (``--max-memory``): a byte budget for the decoder that changes the class chunks, never the results."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import twdeploy
from tests.inference.tiny_model import CLASS_NAMES, build_run, write_mixed_folder
from tests.test_api import _folder_dataset as folder_dataset
from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.model.segmenter import DEFAULT_MAX_MEMORY, Segmenter, parse_memory

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2GB", 2 * 10**9),
        ("2GiB", 2 * 2**30),
        ("1.5 gib", 3 * 2**29),
        ("512MiB", 512 * 2**20),
        ("800mb", 800 * 10**6),
        ("64KiB", 64 * 1024),
        ("1TB", 10**12),
        ("4096", 4096),
        ("10B", 10),
        (123, 123),
    ],
)
def test_memory_sizes_parse(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["2G", "lots", "-1GB", "0", "0.1B", "GB", "2 GB extra", True])
def test_bad_memory_sizes_are_one_line_errors(text: str | bool) -> None:
    with pytest.raises(TwdeployError, match="--max-memory") as info:
        parse_memory(text)
    assert "\n" not in str(info.value)


def _count_chunks(model: Segmenter) -> list[int]:
    """Record how many classes each decoder pass of ``model`` takes."""
    chunks: list[int] = []
    decode = model.encoder.lrp_relevance

    def counted(saved, r, ctx):
        chunks.append(int(r.shape[1]))
        return decode(saved, r, ctx)

    model.encoder.lrp_relevance = counted
    return chunks


def test_small_budget_more_chunks_same_heatmaps(tiny_run: tuple[Path, Path]) -> None:
    images = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    default = twdeploy.load(tiny_run[0], device="cpu")
    small = twdeploy.load(tiny_run[0], device="cpu", max_memory="1KB")
    assert default.runtime.model.max_memory == DEFAULT_MAX_MEMORY and small.runtime.model.max_memory == 1000
    whole, chunked = _count_chunks(default.runtime.model), _count_chunks(small.runtime.model)
    logits, heatmaps = default.runtime.infer(images)[:2]
    logits_small, heatmaps_small = small.runtime.infer(images)[:2]
    assert whole == [len(CLASS_NAMES)] and chunked == [1] * len(CLASS_NAMES)
    np.testing.assert_array_equal(logits_small, logits)
    np.testing.assert_allclose(heatmaps_small, heatmaps, rtol=1e-6, atol=1e-7)


def test_budget_is_for_torch_models_only(tiny_run: tuple[Path, Path]) -> None:
    with pytest.raises(TwdeployError, match="fixed at export"):
        twdeploy.load(tiny_run[1], device="cpu", max_memory="1GB")
    with pytest.raises(TwdeployError, match="max_memory lots"):
        twdeploy.load(tiny_run[0], device="cpu", max_memory="lots")


def test_segment_and_eval_with_a_small_budget_match(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    data = folder_dataset(tmp_path / "data")
    saved = {}
    for name, extra in (("default", []), ("small", ["--max-memory", "4KiB"])):
        out = tmp_path / name
        args = ["segment", str(tiny_run[0]), str(tmp_path / "images"), "--out", str(out), "--save", "mask,heatmaps"]
        result = runner.invoke(app, [*args, "--device", "cpu", *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        files = sorted(p for p in out.rglob("*.png"))
        saved[name] = {p.relative_to(out): cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(int) for p in files}
    assert saved["small"].keys() == saved["default"].keys()
    assert {p.parts[0] for p in saved["default"]} == {"masks", "heatmaps"}
    for key, image in saved["default"].items():
        assert np.abs(saved["small"][key] - image).max() <= (0 if key.parts[0] == "masks" else 1), key
    tables = [
        runner.invoke(app, ["eval", str(tiny_run[0]), "--data", data, "--device", "cpu", *extra]).output
        for extra in ([], ["--max-memory", "1KB"])
    ]
    assert "mIoU" in tables[0] and tables[0] == tables[1]


def test_segment_onnx_with_a_budget_is_a_one_line_error(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = runner.invoke(app, ["segment", str(tiny_run[1]), str(tmp_path), "--max-memory", "1GB"])
    assert result.exit_code == 1 and "fixed at export" in str(result.exception)
    result = runner.invoke(app, ["segment", str(tiny_run[0]), str(tmp_path), "--max-memory", "2G"])
    assert result.exit_code == 1 and "--max-memory 2G: not a memory size" in str(result.exception)


def test_export_budget_chunks_the_graph_and_verifies(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    counts = {}
    for name, extra in (("default", []), ("small", ["--max-memory", "1KB"])):
        out = tmp_path / name
        result = runner.invoke(app, ["export", str(tiny_run[0]), "--out", str(out), "--batch", "2", *extra])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "export_report.json").read_text())
        assert report["passed"] and report["settings"]["max_memory"] == (1000 if extra else None)
        assert "max_memory" not in report["card"]
        counts[name] = sum(n.op_type == "ConvTranspose" for n in onnx.load(out / "model.onnx").graph.node)
    assert counts["small"] == len(CLASS_NAMES) * counts["default"]  # one decoder pass per class


def test_segmenter_rejects_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="max_memory"):
        Segmenter("vgg_mini", num_classes=3, max_memory=0)
    assert Segmenter("vgg_mini", num_classes=3, max_memory=None).max_memory == DEFAULT_MAX_MEMORY
