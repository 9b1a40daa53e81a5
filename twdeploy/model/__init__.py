"""Backbones, relevance rules and the segmenter (encoder + tied LRP decoder)."""

from twdeploy.model.backbones import BACKBONES, build_backbone
from twdeploy.model.segmenter import ClassSelection, Segmenter, masks_from_heatmaps

__all__ = ["BACKBONES", "ClassSelection", "Segmenter", "build_backbone", "masks_from_heatmaps"]
