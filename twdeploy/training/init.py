"""Start weights of a new run (``--weights imagenet|FILE``, ``--init RUN_OR_CHECKPOINT``) and the
input normalisation they imply."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from twdeploy.data import Normalization
from twdeploy.errors import TwdeployError
from twdeploy.model.io import checkpoint_card, read_checkpoint, resolve_checkpoint
from twdeploy.model.pretrained import LoadReport, init_from_run, load_pretrained, packaged_weights_file
from twdeploy.model.registry import get_backbone
from twdeploy.model.segmenter import Segmenter
from twdeploy.model.unet import UNet
from twdeploy.training.config import TrainConfig


def with_start_normalization(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the normalisation its start weights expect: ``meanstd`` (the architecture's
    pretrained scaling) for ``--weights``, the earlier run's for ``--init``. A missing source is a
    one-line error here, before the run folder is made."""
    if cfg.weights is not None:
        file = packaged_weights_file(cfg.arch) if cfg.weights == "imagenet" else Path(cfg.weights)
        if not file.is_file():
            raise TwdeployError(f"{file}: no such weight file; check --weights")
        return replace(cfg, normalization="meanstd")
    if cfg.init is not None:
        card = checkpoint_card(read_checkpoint(cfg.init), resolve_checkpoint(cfg.init))
        return replace(cfg, normalization=card.normalization.get("mode", "unit"))
    return cfg


def input_normalization(arch: str, mode: str) -> Normalization:
    """``unit``, or ``meanstd`` with the mean/std the architecture's pretrained weights expect."""
    if mode != "meanstd":
        return Normalization(mode="unit")
    return Normalization.from_dict(get_backbone(arch).normalization)


def initialise(model: Segmenter | UNet, cfg: TrainConfig, class_names: tuple[str, ...]) -> LoadReport | None:
    """Load the run's start weights into ``model`` (nothing without ``--weights``/``--init``)."""
    if cfg.weights is not None:
        return load_pretrained(model.encoder, cfg.arch, cfg.weights)
    if cfg.init is not None:
        return init_from_run(model, cfg.init, class_names)
    return None
