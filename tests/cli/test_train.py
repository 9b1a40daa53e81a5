"""``twdeploy train`` / ``twdeploy eval``: a tiny run end to end and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from twdeploy.cli.app import app

TINY = ["--data", "synthetic:24", "--image-size", "64", "--batch-size", "4", "--steps", "2", "--val-images", "4"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twdeploy", *args], capture_output=True, text=True, timeout=300)


def test_help_shows_examples() -> None:
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "twdeploy train --data synthetic --arch vgg_mini" in result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(app, ["train", *TINY, "--out", str(out), "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert "twdeploy export" in result.output
    return out / "tiny"


def test_train_then_eval_prints_per_class_table(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(run_dir), "--data", "synthetic:24", "--max-images", "4"])
    assert result.exit_code == 0, result.output
    for text in ("background", "star", "mIoU", "pixel accuracy", "tag F1"):
        assert text in result.output


def test_existing_run_folder_is_an_error(run_dir: Path) -> None:
    proc = _cli("train", *TINY, "--out", str(run_dir.parent), "--name", "tiny")
    assert proc.returncode == 1 and "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_class_count_mismatch_is_one_line(run_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncat\n")
    for i in range(12):
        cv2.imwrite(str(root / "images" / f"img{i}.png"), np.full((64, 64, 3), 20 * i, np.uint8))
        cv2.imwrite(str(root / "masks" / f"img{i}.png"), np.zeros((64, 64), np.uint8))
    proc = _cli("eval", str(run_dir), "--data", f"folder:{root}")
    assert proc.returncode == 1, proc.stderr
    assert "7 classes" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--arch", "resnet9000"], "unknown architecture"),
        (["train", "--data", "voc:/nonexistent"], "missing"),
        (["train", "--resume", "/nonexistent/run"], "not a run folder"),
        (["eval", "/nonexistent/run"], "no such file"),
    ],
)
def test_bad_input_is_one_line_error(args: list[str], message: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
