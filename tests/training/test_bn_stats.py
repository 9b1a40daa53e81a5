"""Batch-norm statistics while training: running (frozen) for pretrained starts, batch otherwise."""

from pathlib import Path

import pytest
import torch
from torch import nn

from twdeploy.training.config import TrainConfig
from twdeploy.training.data import train_loader
from twdeploy.training.trainer import Trainer


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(data="synthetic:24", arch="vgg_mini_bn", image_size=64, batch_size=4, steps=2, val_images=4,
                out=str(tmp_path), name="bn")
    return TrainConfig(**{**base, **kw}).validate()


@pytest.mark.parametrize(
    ("kw", "frozen"),
    [
        ({}, False),
        ({"bn_stats": "running"}, True),
        ({"weights": "w.pt"}, True),
        ({"init": "runs/x"}, True),
        ({"recipe": "paper"}, True),
        ({"stage": "classify"}, False),
        ({"weights": "w.pt", "bn_stats": "batch"}, False),
    ],
)
def test_auto_freezes_for_weights_from_elsewhere(tmp_path, kw, frozen):
    assert _cfg(tmp_path, **kw).frozen_bn() is frozen


@pytest.mark.parametrize("stats", ["running", "batch"])
def test_training_step_keeps_or_updates_running_statistics(tmp_path, stats):
    cfg = _cfg(tmp_path, bn_stats=stats)
    (tmp_path / "bn").mkdir()
    trainer = Trainer(cfg, tmp_path / "bn", quiet=True)
    bns = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    trainer.train_step(next(iter(train_loader(trainer.data, cfg, 0))))
    changed = [not torch.equal(b, bn.running_mean) for b, bn in zip(before, bns, strict=True)]
    assert all(changed) if stats == "batch" else not any(changed)
    assert all(bn.training is (stats == "batch") for bn in bns)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for bn in bns for p in bn.parameters())
    trainer.evaluate()  # evaluation leaves the same mode behind
    assert all(bn.training is (stats == "batch") for bn in bns) and trainer.model.training
