"""Backbones and their registry, relevance rules, the segmenter (encoder + LRP decoder), card and checkpoints."""

from twdeploy.model.card import ModelCard
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.registry import BackboneSpec, backbone_names, build_backbone, get_backbone, register_backbone
from twdeploy.model.segmenter import ClassSelection, Segmenter, masks_from_heatmaps

__all__ = [
    "BackboneSpec",
    "ClassSelection",
    "ModelCard",
    "Segmenter",
    "backbone_names",
    "build_backbone",
    "fold_batchnorm",
    "get_backbone",
    "masks_from_heatmaps",
    "register_backbone",
]
