"""The training loop on synthetic data: learns, is deterministic, resumes exactly, writes atomically."""

import json
from pathlib import Path

import pytest
import torch

from twdeploy.data import build_dataset
from twdeploy.model.io import load_model, read_checkpoint
from twdeploy.runtime import allocator
from twdeploy.training.config import TrainConfig
from twdeploy.training.metrics import ConfusionMatrix
from twdeploy.training.trainer import resume, train


def _cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    base = dict(
        data="synthetic:48", arch="resnet_mini", image_size=64, batch_size=4, steps=6, eval_every=3, log_every=2,
        val_images=4, lr=2e-3, out=str(tmp_path), name=name,
    )
    return TrainConfig(**{**base, **kw})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_learns_beyond_all_background(tmp_path: Path) -> None:
    """20 pixel-labelled + tagged synthetic scenes, 300 steps: well above predicting background everywhere."""
    cfg = _cfg(
        tmp_path, "ci", data="synthetic:1000", arch="vgg_mini", pixel_labels=20, batch_size=16, steps=300,
        eval_every=300, log_every=50, val_images=200, lr=1e-3, w_cls=1.0,
    )
    result = train(cfg, quiet=True)
    val = build_dataset(cfg.data, "val", cfg.image_size, train=False)
    baseline = ConfusionMatrix(val.num_classes)
    for i in range(200):
        mask = val[i]["mask"]
        baseline.update(torch.zeros_like(mask), mask)
    assert result.step == 300
    assert result.last_eval is not None
    assert result.last_eval.miou > 1.6 * baseline.miou(), (result.last_eval.miou, baseline.miou())
    run = result.run_dir
    for name in ("config.json", "metrics.jsonl", "curves.png", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files left
    _model, card = load_model(run)
    assert card.class_names[0] == "background" and card.image_size == (64, 64)


def test_same_seed_same_losses(tmp_path: Path) -> None:
    a = train(_cfg(tmp_path, "a", steps=2, eval_every=2), quiet=True)
    b = train(_cfg(tmp_path, "b", steps=2, eval_every=2), quiet=True)
    assert a.losses == b.losses


def test_freed_memory_is_released_after_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps_done = []
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: steps_done.append(1) or True)
    train(_cfg(tmp_path, "release", steps=3, eval_every=3), quiet=True)
    assert len(steps_done) == 3


def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    full = train(_cfg(tmp_path, "full"), quiet=True)

    def stop_at_4(step: int, losses: dict[str, float]) -> None:
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "cut"), callbacks=[stop_at_4], quiet=True)
    cut = tmp_path / "cut"
    assert read_checkpoint(cut / "checkpoints" / "last.pt")["training"]["step"] == 4
    resumed = resume(cut, quiet=True)
    assert resumed.step == full.step == 6
    assert resumed.losses == full.losses[4:]
    for key, value in _weights(full.run_dir).items():
        assert torch.equal(value, _weights(cut)[key]), key
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]


def test_tie_modes_both_train_and_differ(tmp_path: Path) -> None:
    sep = train(_cfg(tmp_path, "sep", steps=2, eval_every=2, tie="separate"), quiet=True)
    summ = train(_cfg(tmp_path, "sum", steps=2, eval_every=2, tie="summed"), quiet=True)
    assert all(torch.isfinite(torch.tensor(r.losses)).all() for r in (sep, summ))
    assert sep.losses[0] == summ.losses[0]  # same start
    conv = "encoder.conv1.weight"
    assert not torch.equal(_weights(sep.run_dir)[conv], _weights(summ.run_dir)[conv])


def test_input_rule_trains_and_reaches_the_checkpoint(tmp_path: Path) -> None:
    eps = train(_cfg(tmp_path, "eps", steps=2, eval_every=2), quiet=True)
    flat = train(_cfg(tmp_path, "flat", steps=2, eval_every=2, input_rule="flat"), quiet=True)
    assert torch.isfinite(torch.tensor(flat.losses)).all()
    assert flat.losses[0] != eps.losses[0]  # same weights and batch, other heatmaps
    model, card = load_model(flat.run_dir)
    assert card.input_rule == "flat" and model.input_rule == "flat"


def test_gamma_rule_trains_and_reaches_the_checkpoint(tmp_path: Path) -> None:
    canonical = dict(steps=2, eval_every=2, bn_rule="canonical")
    eps = train(_cfg(tmp_path, "eps", **canonical), quiet=True)
    gamma = train(_cfg(tmp_path, "gamma", gamma=0.25, **canonical), quiet=True)
    assert torch.isfinite(torch.tensor(gamma.losses)).all()
    assert gamma.losses[0] != eps.losses[0]  # same weights and batch, other heatmaps
    model, card = load_model(gamma.run_dir)
    assert card.gamma == 0.25 and model.gamma == 0.25


def test_classify_stage_learns_tags_without_decoder(tmp_path: Path) -> None:
    """Tags only, vgg_mini_bn from scratch: tag F1 well above chance in 250 steps; no pixel loss logged."""
    cfg = _cfg(
        tmp_path, "cls", data="synthetic:1000", arch="vgg_mini_bn", stage="classify", batch_size=16, steps=250,
        eval_every=250, log_every=50, val_images=100, lr=1e-3,
    )
    result = train(cfg, quiet=True)
    assert result.last_eval is not None and result.last_eval.f1 > 0.8, result.last_eval
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} == {"classify"}
    assert not any("seg" in r for r in records if r["kind"] == "train")
    assert read_checkpoint(result.run_dir / "checkpoints" / "last.pt")["training"]["stage"] == "classify"


def test_recipe_resumes_in_the_stage_it_stopped(tmp_path: Path) -> None:
    """--recipe paper stopped in its classify stage resumes there, then runs the segment stage from its weights."""
    kw = dict(recipe="paper", classify_steps=4, steps=3, eval_every=2, arch="vgg_mini_bn")
    full = train(_cfg(tmp_path, "full", **kw), quiet=True)
    calls: list[int] = []

    def stop_at_3(step: int, losses: dict[str, float]) -> None:
        calls.append(step)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "cut", **kw), callbacks=[stop_at_3], quiet=True)
    cut = tmp_path / "cut"
    assert read_checkpoint(cut / "classify" / "checkpoints" / "last.pt")["training"]["step"] == 3
    assert not (cut / "checkpoints").exists()
    resumed = resume(cut, quiet=True)
    assert resumed.step == 3 and resumed.losses == full.losses
    assert read_checkpoint(cut / "checkpoints" / "last.pt")["training"]["stage"] == "segment"
    for key, value in _weights(full.run_dir).items():
        assert torch.equal(value, _weights(cut)[key]), key
    stages = [json.loads(line)["stage"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert set(stages) == {"segment"}
