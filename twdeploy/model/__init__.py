"""Backbones, relevance rules, the segmenter (encoder + tied LRP decoder), its card and checkpoints."""

from twdeploy.model.backbones import BACKBONES, build_backbone
from twdeploy.model.card import ModelCard
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.segmenter import ClassSelection, Segmenter, masks_from_heatmaps

__all__ = [
    "BACKBONES",
    "ClassSelection",
    "ModelCard",
    "Segmenter",
    "build_backbone",
    "fold_batchnorm",
    "masks_from_heatmaps",
]
