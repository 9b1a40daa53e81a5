"""Bad, odd and hostile inputs through the real CLI: exit code, one clean line naming the file, good items kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.inference.tiny_model import write_clip
from tests.reliability.conftest import Ledger, Outcome
from tests.reliability.corpus import bad_images, bad_models, bad_videos, odd_images, video_frames, write_corpus_folder


def _one_clean_line(outcome: Outcome, *names: str) -> None:
    assert not outcome.traceback, outcome.err
    lines = [line for line in outcome.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, outcome.err
    for name in names:
        assert name in " ".join(outcome.err.split()), (name, outcome.err)


def _decodes(path: Path) -> bool:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None



def test_folder_of_good_odd_and_bad_files(cli, ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    good, skipped = write_corpus_folder(tmp_path / "in")
    out = tmp_path / "out"
    result = cli("segment", tiny_model[1], tmp_path / "in", "--out", out, "--save", "mask,video,json")
    ledger.record("segment: folder of good, odd and bad images and videos", result)
    assert result.code == 0 and not result.traceback, result.err
    for name in good:
        assert _decodes(out / "masks" / f"{name}.png"), name
    assert video_frames(out / "videos" / "videos" / "good.mp4") == 4
    records = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(Path(r["source"]).stem for r in records) == sorted(skipped)
    text = " ".join(result.out.split())
    for record in records:
        assert record["reason"] and record["source"] in text  # full path and reason on screen
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.partial.mp4"))


def test_folder_of_one_good_and_four_bad_videos(cli, ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    bad_videos(folder)
    write_clip(folder / "fine.avi", 5)
    result = cli("segment", tiny_model[1], folder, "--out", tmp_path / "out")
    ledger.record("segment: 1 good and 4 bad videos", result)
    assert result.code == 0 and not result.traceback, result.err
    assert video_frames(tmp_path / "out" / "videos" / "fine.mp4") == 5
    assert "skipped: 4" in result.out


@pytest.mark.parametrize("name", sorted(bad_images()))
def test_lone_bad_image_is_a_clean_failure(cli, ledger: Ledger, tiny_model, tmp_path: Path, name: str) -> None:
    content = bad_images()[name]
    path = tmp_path / name
    content(path) if callable(content) else path.write_bytes(content)
    result = cli("segment", tiny_model[1], path, "--out", tmp_path / "out")
    ledger.record(f"segment: lone bad image {name}", result)
    assert result.code == 1
    _one_clean_line(result, str(path) if path.suffix != ".xyz" and not path.is_symlink() else name)


@pytest.mark.parametrize("name", sorted(odd_images()))
def test_odd_but_valid_image_is_segmented(cli, ledger: Ledger, tiny_model, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(odd_images()[name])
    result = cli("segment", tiny_model[1], path, "--out", tmp_path / "out", "--save", "mask")
    ledger.record(f"segment: odd image {name}", result)
    assert result.code == 0, result.err
    mask = cv2.imread(str(tmp_path / "out" / "masks" / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.shape[:2] == cv2.imdecode(np.fromfile(path, np.uint8), -1).shape[:2]


@pytest.mark.parametrize("index", range(4))
def test_lone_bad_video_is_a_clean_failure(cli, ledger: Ledger, tiny_model, tmp_path: Path, index: int) -> None:
    path = bad_videos(tmp_path / "v")[index]
    result = cli("segment", tiny_model[1], path, "--out", tmp_path / "out")
    ledger.record(f"segment: lone bad video {path.name}", result)
    assert result.code == 1
    _one_clean_line(result, str(path))


def test_bad_model_files(cli, ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    run, onnx_path = tiny_model
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    cases = bad_models(tmp_path / "models", run / "checkpoints" / "best.pt", onnx_path)
    for case, (path, message) in cases.items():
        result = cli("segment", path, image, "--out", tmp_path / "out")
        ledger.record(f"model: {case}", result)
        assert result.code == 1, (case, result.err)
        _one_clean_line(result, str(path), message)
    assert not (tmp_path / "models" / "PWNED").exists()  # weights_only: the pickle's code never ran


def _flag_cases(tmp_path: Path, model: Path) -> list[tuple[list[str | Path], str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    seg = ["segment", model, image]
    train = ["train", "--data", "synthetic:8", "--steps", "1", "--out", tmp_path / "runs"]
    return [
        ([*seg, "--out", a_file], f"{a_file}: is a file"),
        ([*seg, "--out", a_file / "sub"], f"lies under the file {a_file}"),
        ([*seg, "--device", "tpu"], "--device tpu"),
        ([*seg, "--save", "everything"], "--save everything"),
        ([*seg, "--classes", "unicorn"], "--classes unicorn"),
        (["segment", model, tmp_path / "missing.png"], str(tmp_path / "missing.png")),
        ([*train, "--name", "../.."], "--name '../..'"),
        ([*train, "--name", "a/b"], "--name 'a/b'"),
        ([*train, "--eps", "inf"], "--eps must be positive and finite"),
        ([*train, "--lr", "nan"], "--lr must be positive and finite"),
        (["train", "--data", "synthetic:8", "--out", a_file], f"{a_file}: is a file"),
        (["train", "--resume", tmp_path], "not a run folder"),
    ]


def test_bad_flags(cli, ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    for args, message in _flag_cases(tmp_path, tiny_model[1]):
        result = cli(*args)
        ledger.record(f"flags: {' '.join(map(str, args[3:] or args))}", result)
        assert result.code == 1, (args, result.err)
        _one_clean_line(result, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: the permission check cannot fail")
def test_unwritable_out(cli, ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    result = cli("segment", tiny_model[1], image, "--out", locked / "out")
    ledger.record("flags: --out not writable", result)
    assert result.code == 1
    _one_clean_line(result, str(locked))


def _data_folder(root: Path, n: int = 12, masks: int = 12) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nblob\n")
    for i in range(n):
        image = np.full((48, 48, 3), 10 * i, np.uint8)
        cv2.circle(image, (24, 24), 10, (250, 250, 250), -1)
        cv2.imwrite(str(root / "images" / f"img{i:02d}.png"), image)
        if i < masks:
            mask = np.zeros((48, 48), np.uint8)
            cv2.circle(mask, (24, 24), 10, 1, -1)
            cv2.imwrite(str(root / "masks" / f"img{i:02d}.png"), mask)
    return root


TRAIN = ["--arch", "vgg_mini", "--image-size", "32", "--batch-size", "2", "--steps", "1", "--val-images", "2"]


def test_non_utf8_text_files(cli, ledger: Ledger, tmp_path: Path) -> None:
    for name, content in (("classes.txt", "background\nkäfer\n"), ("tags.csv", "image,tags\nimg00.png,bläh\n")):
        root = _data_folder(tmp_path / name)
        (root / name).write_bytes(content.encode("latin-1"))
        result = cli("train", "--data", f"folder:{root}", *TRAIN, "--out", tmp_path / "runs", "--name", name)
        ledger.record(f"data: non-UTF-8 {name}", result)
        assert result.code == 1
        _one_clean_line(result, str(root / name), "not UTF-8")


def test_unreadable_validation_images_fail_before_training(cli, ledger: Ledger, tmp_path: Path) -> None:
    root = _data_folder(tmp_path / "data")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(f"img{i:02d}" for i in range(8)))
    (root / "splits" / "val.txt").write_text("\n".join(f"img{i:02d}" for i in range(8, 12)))
    for i in range(8, 12):
        (root / "images" / f"img{i:02d}.png").write_bytes(b"broken")
    runs = tmp_path / "runs"
    result = cli("train", "--data", f"folder:{root}", *TRAIN, "--steps", "50", "--out", runs, "--name", "v")
    ledger.record("data: every validation image unreadable", result)
    assert result.code == 1
    _one_clean_line(result, "no readable item")
    assert not (runs / "v" / "metrics.jsonl").exists()  # found before the first step, not after all of them


def test_pixel_label_budget_above_the_masks_is_reported(cli, ledger: Ledger, tmp_path: Path, caplog) -> None:
    root = _data_folder(tmp_path / "data", masks=4)
    (root / "tags.csv").write_text("image,tags\n" + "".join(f"img{i:02d}.png,blob\n" for i in range(4, 12)))
    result = cli("train", "--data", f"folder:{root}", *TRAIN, "--pixel-labels", "50", "--out", tmp_path / "r")
    ledger.record("data: --pixel-labels above the masks available", result)
    assert result.code == 0, result.err
    assert "--pixel-labels 50: only" in caplog.text
