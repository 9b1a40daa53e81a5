"""Start weights of a new run (``--weights imagenet|FILE``, ``--init RUN_OR_CHECKPOINT``) and the
input normalisation they imply."""

from __future__ import annotations

from dataclasses import replace

from twdeploy.data import Normalization
from twdeploy.model.card import ModelCard
from twdeploy.model.io import read_checkpoint
from twdeploy.model.pretrained import LoadReport, init_from_run, load_pretrained
from twdeploy.model.registry import get_backbone
from twdeploy.model.segmenter import Segmenter
from twdeploy.training.config import TrainConfig


def with_start_normalization(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the normalisation its start weights expect: ``meanstd`` (the architecture's
    pretrained scaling) for ``--weights``, the earlier run's for ``--init``."""
    if cfg.weights is not None:
        return replace(cfg, normalization="meanstd")
    if cfg.init is not None:
        card = ModelCard.from_dict(read_checkpoint(cfg.init)["card"])
        return replace(cfg, normalization=card.normalization.get("mode", "unit"))
    return cfg


def input_normalization(arch: str, mode: str) -> Normalization:
    """``unit``, or ``meanstd`` with the mean/std the architecture's pretrained weights expect."""
    if mode != "meanstd":
        return Normalization(mode="unit")
    return Normalization.from_dict(get_backbone(arch).normalization)


def initialise(model: Segmenter, cfg: TrainConfig, class_names: tuple[str, ...]) -> LoadReport | None:
    """Load the run's start weights into ``model`` (nothing without ``--weights``/``--init``)."""
    if cfg.weights is not None:
        return load_pretrained(model.encoder, cfg.arch, cfg.weights)
    if cfg.init is not None:
        return init_from_run(model, cfg.init, class_names)
    return None
