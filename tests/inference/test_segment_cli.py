"""``twdeploy segment`` and ``twdeploy benchmark`` end to end on real files: folders, videos, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.inference.tiny_model import build_run, write_clip, write_mixed_folder
from twdeploy.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_run(tmp_path_factory.mktemp("tiny"))


def _segment(*args: str) -> str:
    result = runner.invoke(app, ["segment", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_folder_with_bad_files_torch_and_onnx_agree(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, onnx_path = tiny_run
    good = write_mixed_folder(tmp_path / "images")
    masks = {}
    for name, model in (("torch", run), ("onnx", onnx_path)):
        out = tmp_path / name
        text = _segment(str(model), str(tmp_path / "images"), "--out", str(out), "--batch", "3", "--device", "cpu")
        assert "Written: 4, skipped: 3" in text and "file is empty" in text and "not a decodable image" in text
        assert "Speed:" in text and "per image at shape (3, 3, 64, 64)" in text and str(out) in text
        records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert sorted(r["name"] for r in records) == sorted(good)
        for stem, size in good.items():
            mask = Image.open(out / "masks" / f"{stem}.png")
            assert mask.mode == "P" and (mask.height, mask.width) == size
            assert cv2.imread(str(out / "overlays" / f"{stem}.jpg")).shape[:2] == size
            masks[name, stem] = np.asarray(mask)
    for stem in good:
        assert (masks["torch", stem] == masks["onnx", stem]).mean() > 0.999


def test_video_gives_annotated_video_heatmaps_and_per_frame_results(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "clip.avi", 9)
    out = tmp_path / "out"
    text = _segment(str(tiny_run[1]), str(clip), "--out", str(out), "--batch", "4", "--save", "video,json,heatmaps")
    assert "Written: 9, skipped: 0" in text and "frames/s" in text
    capture = cv2.VideoCapture(str(out / "videos" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 9
    assert (capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == (40, 56)
    capture.release()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["frame_index"] for r in records] == list(range(9))
    heatmaps = sorted(p.name for p in (out / "heatmaps" / "clip_000000").iterdir())
    assert heatmaps == ["0_background.png", "1_disc.png", "2_square.png"]

    strided = tmp_path / "strided"
    _segment(str(tiny_run[1]), str(clip), "--out", str(strided), "--vid-stride", "2", "--classes", "disc")
    indices = [json.loads(line)["frame_index"] for line in (strided / "results.jsonl").read_text().splitlines()]
    assert indices == [0, 2, 4, 6, 8]


def test_show_without_display_says_why(tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    text = _segment(str(tiny_run[1]), str(image), "--show", "--out", str(tmp_path / "out"))
    assert "--show ignored" in text and "Written: 1" in text


def test_benchmark_table_and_json(tiny_run: tuple[Path, Path]) -> None:
    run = tiny_run[0]
    table = runner.invoke(app, ["benchmark", str(run), "--batches", "1,2", "--runs", "2", "--warmup", "1"])
    assert table.exit_code == 0, table.output
    assert "onnxruntime" in table.output and "torch" in table.output and "Threads:" in table.output
    assert "torch_image_layout=" in table.output
    result = runner.invoke(app, ["benchmark", str(run), "--batches", "2", "--runs", "1", "--warmup", "0", "--json"])
    payload = json.loads(result.output)
    rows = {(r["backend"], r["batch"]): r for r in payload["results"]}
    assert set(rows) == {("torch", 2), ("onnxruntime", 2)}
    assert rows["torch", 2]["speedup_vs_torch"] == 1.0 and rows["onnxruntime", 2]["images_per_s"] > 0
    assert "OMP_NUM_THREADS" in payload["threads"]
    pids = {r["backend"]: r["pid"] for r in payload["results"]}
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # each backend in its own process


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["segment", "{onnx}", "{tmp}/nowhere"], "no such file or folder"),
        (["segment", "{tmp}/model.txt", "{tmp}"], "cannot tell what kind of model"),
        (["segment", "{run}", "{tmp}", "--backend", "onnxruntime"], "use --backend torch"),
        (["benchmark", "{tmp}/missing.onnx"], "no such file"),
    ],
)
def test_cli_errors_are_one_line(tiny_run: tuple[Path, Path], tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "model.txt").write_text("not a model")
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8, 3), np.uint8))
    values = {"onnx": tiny_run[1], "run": tiny_run[0], "tmp": tmp_path}
    argv = [a.format(**values) for a in args]
    proc = subprocess.run([sys.executable, "-m", "twdeploy", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
