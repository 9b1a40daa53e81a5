"""Real kills of real processes: SIGTERM and SIGKILL mid-training, mid-checkpoint-write and mid-video.

After each kill: the exit code, no traceback, a checkpoint that loads and resumes to the end,
videos that play and masks that decode. Nothing already finished may be lost.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch

from tests.inference.tiny_model import write_clip
from tests.reliability.conftest import Ledger, Outcome, spawn
from tests.reliability.corpus import video_frames

TRAIN = ["train", "--data", "synthetic:16", "--arch", "vgg_mini", "--image-size", "64", "--batch-size", "2"]
STEPS = 12


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        assert time.monotonic() < end, "timed out waiting for progress"
        time.sleep(0.05)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _logged_step(run: Path) -> int:
    steps = [json.loads(line)["step"] for line in _lines(run / "metrics.jsonl")]
    return max(steps, default=0)


def _start_training(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    proc = spawn(*TRAIN, "--steps", STEPS, "--eval-every", 1000, "--log-every", 1, *extra,
                 "--out", tmp_path / "runs", "--name", "r", "--val-images", 2)
    return proc, tmp_path / "runs" / "r"


def _saved_step(run: Path) -> int:
    return int(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["training"]["step"])


def _resume_to_the_end(cli: Callable[..., Outcome], run: Path) -> Outcome:
    result = cli("train", "--resume", run)
    assert result.code == 0 and not result.traceback, result.err
    assert _saved_step(run) == STEPS and _logged_step(run) == STEPS
    steps = [json.loads(line)["step"] for line in _lines(run / "metrics.jsonl") if '"train"' in line]
    assert steps == sorted(set(steps))  # no step logged twice after the resume
    return result


def test_sigterm_mid_training_saves_last_pt_and_resumes(cli, ledger: Ledger, tmp_path: Path) -> None:
    proc, run = _start_training(tmp_path)
    _wait_for(lambda: _logged_step(run) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    outcome = Outcome(proc.returncode, out, err)
    lost = _saved_step(run) < _logged_step(run)
    ledger.record("kill: SIGTERM mid-training", outcome, lost)
    assert proc.returncode == 143 and not outcome.traceback, err
    assert "interrupted (SIGTERM)" in err and f"--resume {run}" in " ".join(err.split())
    assert not lost
    _resume_to_the_end(cli, run)


def test_sigkill_before_the_first_checkpoint_restarts(cli, ledger: Ledger, tmp_path: Path) -> None:
    proc, run = _start_training(tmp_path)
    _wait_for(lambda: _logged_step(run) >= 1, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert not (run / "checkpoints" / "last.pt").exists()
    again = cli(*TRAIN, "--steps", STEPS, "--out", tmp_path / "runs", "--name", "r")
    assert again.code == 1 and f"--resume {run}" in " ".join(again.err.split())  # the advice holds:
    ledger.record("kill: SIGKILL before the first checkpoint", _resume_to_the_end(cli, run))


@pytest.mark.parametrize("after_step", [3])
def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(
    cli, ledger: Ledger, tmp_path: Path, after_step: int
) -> None:
    proc, run = _start_training(tmp_path, "--save-every", "1")
    _wait_for(lambda: _logged_step(run) >= after_step, proc)
    proc.kill()  # with a checkpoint every step, often mid-write
    proc.wait(timeout=30)
    saved = _saved_step(run)  # loads: never torn
    lost = saved < after_step - 1
    ledger.record(f"kill: SIGKILL with --save-every 1 after step {after_step}", None, lost)
    assert not lost
    _resume_to_the_end(cli, run)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("after_step", [1, 2, 5, 8, 13])
def test_sigkill_loop_during_checkpoint_writes(cli, ledger: Ledger, tmp_path: Path, after_step: int) -> None:
    test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(cli, ledger, tmp_path, after_step)


def _start_segment(tmp_path: Path, model: Path) -> tuple[subprocess.Popen[str], Path]:
    clip = write_clip(tmp_path / "clip.avi", 300, size=(48, 64), fps=10.0)
    out = tmp_path / "out"
    return spawn("segment", model, clip, "--out", out, "--save", "video,mask,json"), out


def _masks_decode(out: Path) -> bool:
    masks = list((out / "masks").glob("*.png"))
    return bool(masks) and all(cv2.imread(str(m), cv2.IMREAD_UNCHANGED) is not None for m in masks)



def test_sigkill_mid_video_leaves_a_playable_partial_video(ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    proc, out = _start_segment(tmp_path, tiny_model[1])
    _wait_for(lambda: len(_lines(out / "results.jsonl")) >= 35, proc)
    proc.kill()
    proc.wait(timeout=30)
    done = len(_lines(out / "results.jsonl"))
    playable = video_frames(out / "videos" / "clip.partial.mp4")
    lost = playable < 30 or not _masks_decode(out)  # every finished second (10 frames at 10 fps) plays
    ledger.record("kill: SIGKILL mid-video", None, lost)
    assert not lost, (playable, done)


def test_sigterm_mid_video_closes_the_video(ledger: Ledger, tiny_model, tmp_path: Path) -> None:
    proc, out = _start_segment(tmp_path, tiny_model[1])
    _wait_for(lambda: len(_lines(out / "results.jsonl")) >= 5, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    outcome = Outcome(proc.returncode, stdout, err)
    done = len(_lines(out / "results.jsonl"))
    lost = video_frames(out / "videos" / "clip.mp4") != done or not _masks_decode(out)
    ledger.record("kill: SIGTERM mid-video", outcome, lost)
    assert proc.returncode == 143 and not outcome.traceback, err
    assert "interrupted (SIGTERM)" in err and "Written:" in stdout
    assert not lost
