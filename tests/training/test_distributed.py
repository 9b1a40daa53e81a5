"""Data-parallel training under real torchrun (gloo, CPU): equal to one process, reduced evaluation, stop/resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from twdeploy.cli.app import app
from twdeploy.errors import TwdeployError
from twdeploy.model.io import read_checkpoint
from twdeploy.model.registry import unregister_backbone
from twdeploy.training.config import TrainConfig
from twdeploy.training.distributed import Ranks, without_gpus_option
from twdeploy.training.evaluate import evaluate_checkpoint
from twdeploy.training.trainer import resume, train

from .ddp_run import DROPOUT_FREE, register_dropout_free

DDP_RUN = Path(__file__).with_name("ddp_run.py")
# tie=separate: the alias parameters must be synchronised too, or the weights drift from one process's
SETTINGS = dict(
    data="synthetic:40", arch=DROPOUT_FREE, image_size=64, steps=4, eval_every=4, log_every=1, tie="separate",
    device="cpu", pixel_labels=6, val_images=10,
)
SETTINGS_LR = 1e-3  # TrainConfig's default lr


def _cli_args(**settings: object) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def _torchrun(nproc: int, args: list[str], wait: bool = True, dropout: bool = True) -> subprocess.Popen:
    """``torchrun -m twdeploy train ARGS`` (``dropout=False``: through ddp_run.py, which knows vgg_mini_nodrop)."""
    target = ["-m", "twdeploy"] if dropout else [str(DDP_RUN)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *target,
           "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return proc


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _last(run: Path) -> dict:
    return read_checkpoint(run / "checkpoints" / "last.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The same 4 steps as 1 process with batch 8 and as 2 torchrun processes with batch 4 each (no dropout)."""
    out = tmp_path_factory.mktemp("ddp")
    _torchrun(2, [*_cli_args(**SETTINGS), "--batch-size", "4", "--out", str(out), "--name", "two"], dropout=False)
    torch.set_num_threads(1)
    register_dropout_free()
    single = train(TrainConfig(**SETTINGS, batch_size=8, out=str(out), name="one"), quiet=True)
    yield single.run_dir, out / "two"
    unregister_backbone(DROPOUT_FREE)


def test_two_processes_equal_one_with_the_same_global_batch(runs: tuple[Path, Path]) -> None:
    one, two = runs
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    for a, b in zip(_records(one, "train"), _records(two, "train"), strict=True):
        assert b["global_batch"] == 8 and b["processes"] == 2
        # step 1 is the same weights on the same images; after it, Adam amplifies summation-order noise
        rel = 1e-5 if a["step"] == 1 else 1e-3
        for key in ("loss", "cls", "seg"):
            assert b[key] == pytest.approx(a[key], rel=rel), (a["step"], key)
    # Adam turns float noise in near-zero gradient components into steps of up to lr: bound by 2 x the lr sum
    atol = 2 * sum(r["lr"] for r in _records(one, "train")) + 2 * SETTINGS_LR
    w1, w2 = _last(one)["model"], _last(two)["model"]
    assert w1.keys() == w2.keys()
    for name, value in w1.items():
        torch.testing.assert_close(w2[name], value, rtol=0, atol=atol, msg=name)


def test_every_gradient_is_synchronised_the_aliases_included(runs: tuple[Path, Path]) -> None:
    """Both ranks end with bit-identical leaves and AdamW moments: every gradient, aliases too, was averaged."""
    _, two = runs
    rank0, rank1 = (torch.load(two / f"rank{r}.pt") for r in (0, 1))
    model_params = sum(1 for _ in _last(two)["model"])  # vgg_mini: parameters only, no buffers
    assert len(rank0["leaves"]) == len(rank1["leaves"]) > model_params  # tie=separate: the aliases are leaves
    for a, b in zip(rank0["leaves"], rank1["leaves"], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(rank0["state"], rank1["state"], strict=True):
        assert a.keys() == b.keys() == {"exp_avg", "exp_avg_sq"}
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_reduced_evaluation_equals_one_process(runs: tuple[Path, Path]) -> None:
    """Each rank scored half the validation set; the summed counts give the single-process metrics exactly."""
    _, two = runs
    logged = _records(two, "eval")[-1]
    alone = evaluate_checkpoint(two, SETTINGS["data"], batch_size=3, device="cpu", max_images=SETTINGS["val_images"])
    assert logged["images"] == alone.images == SETTINGS["val_images"]
    assert logged["iou"] == alone.iou
    for key in ("miou", "pixel_accuracy", "f1", "f1_macro"):
        assert logged[key] == alone.summary()[key], key


def test_per_rank_share_keeps_the_batch_mix() -> None:
    keys = [("pixel", i) for i in range(4)] + [("tag", i) for i in range(4)]
    shares = [Ranks(rank, 2, launched=True).share(keys) for rank in (0, 1)]
    assert [kind for kind, _ in shares[0]] == [kind for kind, _ in shares[1]] == ["pixel"] * 2 + ["tag"] * 2
    assert sorted(shares[0] + shares[1]) == sorted(keys)


def test_gpus_option_is_removed_before_torchrun() -> None:
    argv = ["train", "--gpus", "2", "--steps", "5", "--gpus=3", "--name", "x"]
    assert without_gpus_option(argv) == ["train", "--steps", "5", "--name", "x"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without GPUs")
def test_gpus_without_cuda_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TwdeployError, match="--gpus 2: no CUDA device is visible; on CPU run torchrun"):
        CliRunner().invoke(app, ["train", "--gpus", "2", "--out", str(tmp_path)], catch_exceptions=False)


def test_resume_needs_a_process_count_dividing_the_global_batch() -> None:
    """A run with global batch 8 resumes in 1, 2, 4 or 8 processes; 3 cannot split it."""
    assert [Ranks(0, n, launched=True).per_rank_batch(8, "runs/x") for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
    with pytest.raises(TwdeployError, match="runs/x: the global batch of 8 images does not split over 3 processes"):
        Ranks(0, 3, launched=True).per_rank_batch(8, "runs/x")


def _workers(agent: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun started."""
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    ranks = {}
    for pid in map(int, children):
        env = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        if "RANK" in env:
            ranks[int(env["RANK"])] = pid
    return ranks


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_all_then_resumes_on_one_and_two(tmp_path: Path) -> None:
    """SIGTERM to rank 1: every rank stops after the same step, rank 0 saves last.pt; resume 1 then 2 processes."""
    steps = 40
    settings = {**SETTINGS, "arch": "vgg_mini", "steps": steps, "eval_every": steps, "save_every": 0}
    args = [*_cli_args(**settings), "--batch-size", "4", "--out", str(tmp_path), "--name", "run"]
    agent = _torchrun(2, args, wait=False)
    run = tmp_path / "run"
    deadline = time.monotonic() + 240
    while not ((run / "metrics.jsonl").is_file() and _records(run, "train")):
        assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read() if agent.stdout else ""
        time.sleep(0.2)
    os.kill(_workers(agent.pid)[1], signal.SIGTERM)
    out, _ = agent.communicate(timeout=120)
    assert agent.returncode != 0, out
    stopped = _last(run)["training"]["step"]
    assert 1 <= stopped < steps, out
    assert "interrupted (SIGTERM)" in out and f"stopped at step {stopped}" in out
    torch.set_num_threads(1)
    # one process continues the 2-process run, at the run's global batch of 8
    result = resume(run, quiet=True)
    assert result.step == steps
    logged = [r["step"] for r in _records(run, "train")]
    assert logged == sorted(set(logged)) and logged[-1] == steps  # the stop step's line is lost, as in one process
    assert len(logged) >= steps - 1
    # and a finished run resumed by 2 processes again is a no-op that keeps the weights
    before = _last(run)["model"]
    _torchrun(2, ["--resume", str(run)])
    after = _last(run)["model"]
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    assert np.isfinite([r["loss"] for r in _records(run, "train")]).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind", [["--model", "unet"], ["--stage", "classify", "--tie", "separate"]])
def test_steps_whose_forward_leaves_parameters_unused(tmp_path: Path, kind: list[str]) -> None:
    """A U-Net skips its classifier head, a classify stage the decoder aliases: DDP still steps."""
    settings = {**SETTINGS, "arch": "vgg_mini", "steps": 2, "eval_every": 2}
    del settings["tie"]
    _torchrun(2, [*_cli_args(**settings), *kind, "--batch-size", "4", "--out", str(tmp_path), "--name", "run"])
    assert _last(tmp_path / "run")["training"]["step"] == 2
