"""Training the model kinds on tiny synthetic data: losses fall, the U-Net ignores tags and can overfit."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from twdeploy.data import build_dataset
from twdeploy.model.card import ModelCard
from twdeploy.model.io import load_model, save_checkpoint
from twdeploy.model.registry import build_backbone
from twdeploy.model.unet import MultiTaskUNet, UNet
from twdeploy.training.config import TrainConfig
from twdeploy.training.data import eval_loader
from twdeploy.training.evaluate import evaluate
from twdeploy.training.init import initialise
from twdeploy.training.metrics import ConfusionMatrix
from twdeploy.training.trainer import Trainer, train


def _cfg(tmp_path: Path, model: str, name: str | None = None, **kw) -> TrainConfig:
    base = dict(
        data="synthetic:48", model=model, arch="vgg_mini", image_size=64, batch_size=6, pixel_labels=8, steps=10,
        eval_every=10, log_every=4, val_images=4, lr=1e-3, w_cls=1.0, out=str(tmp_path), name=name or model,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("model", ["heatmap", "unet", "mtunet"])
def test_each_model_kind_trains_and_its_loss_falls(tmp_path: Path, model: str) -> None:
    result = train(_cfg(tmp_path, model), quiet=True)
    first, last = statistics.mean(result.losses[:3]), statistics.mean(result.losses[-3:])
    assert last < first, result.losses
    assert result.last_eval is not None and 0.0 <= result.last_eval.miou <= 1.0
    assert math.isnan(result.last_eval.f1) == (model == "unet")  # tag F1 only with a classification head
    loaded, card = load_model(result.run_dir)
    assert card.model == model and loaded.has_classifier == (model != "unet")


def test_unet_loss_ignores_tags_and_multitask_uses_them(tmp_path: Path) -> None:
    def losses(model: str, w_cls: float) -> list[float]:
        return train(_cfg(tmp_path, model, f"{model}-{w_cls}", steps=2, w_cls=w_cls), quiet=True).losses

    assert losses("unet", 0.0) == losses("unet", 10.0)
    assert losses("mtunet", 0.0) != losses("mtunet", 10.0)


def test_unet_overfits_a_handful_of_masked_images(tmp_path: Path) -> None:
    """Four pixel-labelled scenes, 60 steps: mIoU on them far above predicting background everywhere."""
    cfg = _cfg(tmp_path, "unet", pixel_labels=4, batch_size=4, steps=60, eval_every=60, lr=3e-3)
    (tmp_path / "overfit").mkdir()
    trainer = Trainer(cfg, tmp_path / "overfit", quiet=True)
    trainer.fit()
    assert isinstance(trainer.model, UNet) and not isinstance(trainer.model, MultiTaskUNet)
    seen = Subset(build_dataset(cfg.data, "train", cfg.image_size, train=False), trainer.data.pixel_indices.tolist())
    names = trainer.data.class_names
    result = evaluate(trainer.model, eval_loader(seen, 4), names, torch.device("cpu"), amp=False)
    background = ConfusionMatrix(len(names))
    for item in seen:
        background.update(torch.zeros_like(item["mask"]), item["mask"])
    assert result.miou > 0.3 and result.miou > 2.5 * background.miou(), (result.miou, background.miou())


@pytest.mark.parametrize("model", ["unet", "mtunet"])
def test_weights_and_init_start_the_unet_encoder(tmp_path: Path, model: str) -> None:
    """``--weights FILE`` (a classifier's state dict) and ``--init RUN`` (a heatmap run) fill the U-Net's encoder."""
    torch.manual_seed(1)
    classifier = build_backbone("resnet_mini", 3)
    torch.save(classifier.state_dict(), tmp_path / "classifier.pth")
    names = ("background", "a", "b")
    target = UNet("resnet_mini", 3) if model == "unet" else MultiTaskUNet("resnet_mini", 3)
    decoder_before = target.classify.weight.clone()
    initialise(target, _cfg(tmp_path, model, arch="resnet_mini", weights=str(tmp_path / "classifier.pth")), names)
    assert torch.equal(target.encoder.layer3[0].conv2.weight, classifier.layer3[0].conv2.weight)
    assert torch.equal(target.classify.weight, decoder_before)  # the decoder keeps its initialisation
    source = ModelCard("resnet_mini", names, (64, 64))
    torch.manual_seed(2)
    earlier = source.build()
    save_checkpoint(tmp_path / "earlier" / "checkpoints" / "last.pt", earlier, source)
    initialise(target, _cfg(tmp_path, model, arch="resnet_mini", init=str(tmp_path / "earlier")), names)
    assert torch.equal(target.encoder.fc.weight, earlier.encoder.fc.weight)  # same classes: the head too
