"""The training configuration: one dataclass, validated, stored as ``config.json`` in the run folder."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from twdeploy.errors import TwdeployError
from twdeploy.model.card import MODEL_KINDS
from twdeploy.model.lrp import BN_RULES, INPUT_RULES
from twdeploy.model.registry import backbone_names
from twdeploy.runtime.device import DEVICE_PATTERN

Tie = Literal["separate", "summed"]
TIE_MODES = ("separate", "summed")
BOUNDARIES = ("ignore", "background")
STAGES = ("classify", "segment")
RECIPES = ("paper",)
BN_STATS = ("auto", "batch", "running")
HEATMAP_GRADS = ("tied", "full")
DEFAULT_STEPS = 1000


@dataclass
class TrainConfig:
    """Everything a training run needs (method.md section 2; defaults tuned for the CPU demo).

    ``steps`` wins over ``epochs``; with neither, ``DEFAULT_STEPS``. ``pixel_labels`` is the
    pixel-label budget (None: every image that has a mask). ``tie`` chooses how AdamW sees the
    tied decoder weights (method.md 1.3): ``separate`` alias parameters (the reference) or one
    ``summed`` one. Default ``summed``: measured from scratch at lr 1e-3 (resnet_mini, synthetic),
    ``separate`` gives the noisy decoder half full-size Adam steps and the tag loss rises
    (0.59 -> 0.90 in 425 steps) while ``summed`` learns it (0.53 -> 0.25 in 200 steps).
    ``model`` is the kind (card.MODEL_KINDS): the heatmap segmenter, or the paper's U-Net
    (pixel masks only) and multi-task U-Net (masks + tags) baselines on the same encoder.
    ``weights`` (``imagenet`` or a state dict file) or ``init`` (an earlier run) set the start
    weights; ``normalization`` ``meanstd`` is the architecture's pretrained mean/std.
    ``amp`` means bf16 autocast, on CUDA only. ``class_chunk`` bounds decoder memory.
    ``heatmap_scale`` multiplies the heatmaps inside the pixel loss only (masks are the argmax,
    unchanged); None means H*W, so the mean per-pixel logit is on the scale of the class logit
    (relevance sums to about ``z_c`` over the image). 1.0 is the reference's ``hm_sf``.
    ``stage`` ``classify`` trains the encoder on the tags alone (no decoder in the step);
    ``segment`` trains tags + heatmaps. ``recipe`` ``paper`` runs a classify stage of
    ``classify_steps`` steps, then the segment stage (``steps``) from its weights (docs/training.md).
    ``clip_grad`` caps the global gradient norm (None: no clipping).
    ``heatmap_grad`` is the path the pixel loss's gradient takes (docs/training.md): ``tied``, through
    the tied decoder weights only, with the class-independent factors ``a / stab(z)`` and the top
    relevance held fixed (for ReLU nets the exact gradient of the eps -> 0 heatmap, free of the
    ``eps / z**2`` spikes of the stabiliser); ``full``, also through the saved activations (the reference).
    ``bn_stats`` ``running`` keeps every batch norm on its running statistics while training
    (frozen statistics, trained affine: the usual way to fine-tune a pretrained net); ``batch``
    normalises with each batch's; ``auto`` is ``running`` when the weights come from elsewhere
    (``weights``, ``init``, or the recipe's classify stage), else ``batch``. ``bn_rule`` is the
    decoder's batch-norm rule (model/lrp.py: ``separate``, the reference's, or ``canonical``).
    ``input_rule`` is the decoder's rule for the input layer (``epsilon``, the paper's; ``flat`` or
    ``wsquare``, zennit's rules that do not multiply by the pixel values), stored in the model card.
    ``gamma`` > 0 applies LRP-gamma to every other conv of the decoder (stored in the card); it
    needs ``bn_rule`` ``canonical``, the rule the exported, batch-norm-folded model computes.
    ``batch_size`` is per process; ``world_size`` is the process count the run was started with
    (torchrun), so the global batch ``batch_size * world_size`` stays the same on resume.
    """

    data: str = "synthetic"
    model: str = "heatmap"
    arch: str = "vgg_mini"
    image_size: int = 64
    pixel_labels: int | None = 20
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 16
    world_size: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    cosine: bool = True
    w_cls: float = 10.0
    w_seg: float = 1.0
    heatmap_scale: float | None = None
    pixel_share: float = 0.5
    eps: float = 1e-6
    boundary: str = "ignore"
    normalization: str = "unit"
    device: str = "auto"
    amp: bool = True
    class_chunk: int | None = None
    tie: str = "summed"
    stage: str = "segment"
    recipe: str | None = None
    classify_steps: int = 500
    clip_grad: float | None = None
    heatmap_grad: str = "tied"
    bn_stats: str = "auto"
    bn_rule: str = "separate"
    input_rule: str = "epsilon"
    gamma: float = 0.0
    eval_every: int = 250
    save_every: int = 0
    log_every: int = 25
    val_images: int | None = None
    workers: int = 0
    seed: int = 0
    out: str = "runs"
    name: str | None = None
    weights: str | None = None
    init: str | None = None

    def validate(self) -> TrainConfig:
        """Raise a one-line ``TwdeployError`` on a bad value; return self."""
        if self.arch not in backbone_names():
            raise TwdeployError(f"unknown architecture {self.arch!r}; choose one of: {', '.join(backbone_names())}")
        if self.weights is not None and self.init is not None:
            raise TwdeployError("--weights and --init both given; --init already sets every weight, drop one")
        checks = {
            "model": (self.model in MODEL_KINDS, f"one of {', '.join(MODEL_KINDS)}"),
            "tie": (self.tie in TIE_MODES, f"one of {', '.join(TIE_MODES)}"),
            "device": (DEVICE_PATTERN.fullmatch(self.device) is not None, "auto, cpu, cuda or cuda:N"),
            "boundary": (self.boundary in BOUNDARIES, f"one of {', '.join(BOUNDARIES)}"),
            "stage": (self.stage in STAGES, f"one of {', '.join(STAGES)}"),
            "recipe": (self.recipe is None or self.recipe in RECIPES, f"one of {', '.join(RECIPES)}"),
            "bn_stats": (self.bn_stats in BN_STATS, f"one of {', '.join(BN_STATS)}"),
            "bn_rule": (self.bn_rule in BN_RULES, f"one of {', '.join(BN_RULES)}"),
            "input_rule": (self.input_rule in INPUT_RULES, f"one of {', '.join(INPUT_RULES)}"),
            "gamma": (0 <= self.gamma < math.inf, "zero or positive and finite"),
            "heatmap_grad": (self.heatmap_grad in HEATMAP_GRADS, f"one of {', '.join(HEATMAP_GRADS)}"),
            "classify_steps": (self.classify_steps >= 1, "at least 1"),
            "clip_grad": (self.clip_grad is None or self.clip_grad > 0, "positive"),
            "normalization": (self.normalization in ("unit", "meanstd"), "unit or meanstd"),
            "image_size": (self.image_size >= 32, "at least 32"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "world_size": (self.world_size >= 1, "at least 1"),
            "lr": (0 < self.lr < math.inf, "positive and finite"),
            "eps": (0 < self.eps < math.inf, "positive and finite"),
            "pixel_share": (0.0 <= self.pixel_share <= 1.0, "in [0, 1]"),
            "w_cls": (self.w_cls >= 0, "non-negative"),
            "w_seg": (self.w_seg >= 0, "non-negative"),
            "heatmap_scale": (self.heatmap_scale is None or self.heatmap_scale > 0, "positive"),
            "steps": (self.steps is None or self.steps >= 1, "at least 1"),
            "epochs": (self.epochs is None or self.epochs > 0, "positive"),
            "pixel_labels": (self.pixel_labels is None or self.pixel_labels >= 0, "non-negative"),
            "class_chunk": (self.class_chunk is None or self.class_chunk >= 1, "at least 1"),
            "eval_every": (self.eval_every >= 1, "at least 1"),
            "save_every": (self.save_every >= 0, "0 (only at evaluations) or more"),
            "log_every": (self.log_every >= 1, "at least 1"),
            "val_images": (self.val_images is None or self.val_images >= 1, "at least 1"),
            "workers": (self.workers >= 0, "non-negative"),
        }
        if self.name is not None and (not self.name or Path(self.name).name != self.name or self.name in (".", "..")):
            raise TwdeployError(f"--name {self.name!r}: must be one folder name inside --out, without '/' or '..'")
        for name, (ok, need) in checks.items():
            if not ok:
                raise TwdeployError(f"--{name.replace('_', '-')} must be {need}, got {getattr(self, name)!r}")
        if self.gamma > 0 and self.bn_rule != "canonical":
            raise TwdeployError(
                f"--gamma {self.gamma} needs --bn-rule canonical (the rule of the exported, batch-norm-folded "
                "model); add --bn-rule canonical"
            )
        if self.recipe is not None and self.stage != "segment":
            raise TwdeployError(f"--recipe {self.recipe} runs both stages itself; drop --stage {self.stage}")
        return self

    @property
    def tag_weight(self) -> float:
        """The tag loss's weight: ``w_cls``, or 0 for the plain U-Net (trained on pixel masks only)."""
        return 0.0 if self.model == "unet" else self.w_cls

    def frozen_bn(self) -> bool:
        """Whether batch norms keep their running statistics during training (``bn_stats``)."""
        if self.bn_stats != "auto":
            return self.bn_stats == "running"
        recipe_segment = self.recipe is not None and self.stage == "segment"
        return self.weights is not None or self.init is not None or recipe_segment

    def resolved_heatmap_scale(self) -> float:
        """The pixel loss's heatmap factor: ``heatmap_scale``, or H*W when unset; 1 for U-Net score maps."""
        if self.model != "heatmap":
            return 1.0
        return float(self.image_size**2) if self.heatmap_scale is None else self.heatmap_scale

    @property
    def global_batch(self) -> int:
        """Images per optimiser step over all processes."""
        return self.batch_size * self.world_size

    def total_steps(self, train_images: int) -> int:
        """Optimiser steps of the whole run."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * train_images / self.global_batch))
        return DEFAULT_STEPS

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a one-line error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TwdeployError(f"training config has unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write as indented JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a run folder's ``config.json``."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise TwdeployError(f"{path}: cannot read the training config ({exc}); is this a run folder?") from None
        # Run folders written before heatmap_grad existed trained with the full gradient: resume them so.
        return cls.from_dict({"heatmap_grad": "full", **data})


FIELD_HELP: dict[str, str] = {
    "data": "synthetic, synthetic:N, voc:PATH or folder:PATH.",
    "model": "heatmap (LRP decoder), or the baselines unet (masks only) and mtunet (+ tags).",
    "arch": "Backbone, e.g. resnet_mini, vgg_mini, resnet50, vgg16, efficientnet_lite0.",
    "image_size": "Square input size in pixels.",
    "pixel_labels": "Pixel-label budget (class-balanced draw); -1 = every mask.",
    "steps": f"Optimiser steps (default {DEFAULT_STEPS}).",
    "epochs": "Passes over the training set (if no --steps).",
    "batch_size": "Images per batch and process (the global batch is this x processes).",
    "lr": "AdamW learning rate (1e-5 fine-tunes a pretrained classifier).",
    "weight_decay": "AdamW weight decay.",
    "cosine": "Warm-up + cosine learning-rate schedule.",
    "w_cls": "Weight of the tag (multi-label) loss; 0 = pixel labels only.",
    "w_seg": "Weight of the heatmap cross-entropy.",
    "heatmap_scale": "Heatmap factor in the pixel loss (default H*W; 1 = reference).",
    "pixel_share": "Share of each batch drawn from the pixel-labelled images.",
    "eps": "LRP stabiliser epsilon.",
    "boundary": "Label 255: ignore, or background (the reference).",
    "normalization": "Input scaling: unit ((x+1)/256) or meanstd (the backbone's pretrained mean/std).",
    "device": "auto, cpu, cuda or cuda:N.",
    "amp": "bf16 autocast on CUDA (ignored on CPU).",
    "class_chunk": "Decode this many classes at a time (bounds memory).",
    "tie": "Tied weights in AdamW: summed, or separate (reference).",
    "stage": "classify (tags only, no decoder) or segment (tags + heatmaps).",
    "recipe": "paper: a classify stage, then the segment stage from its weights.",
    "classify_steps": "Steps of the recipe's classify stage (--steps counts the segment stage).",
    "clip_grad": "Clip the global gradient norm to this.",
    "heatmap_grad": "Pixel-loss gradient: tied (through the tied decoder weights only) or full (reference).",
    "bn_stats": "Batch norms train on: batch or running statistics; auto = running from pretrained.",
    "bn_rule": "Decoder's batch-norm rule: separate (reference) or canonical (merged into the conv).",
    "input_rule": "Decoder's rule for the input layer: epsilon (paper), flat or wsquare (not scaled by the pixels).",
    "gamma": "LRP-gamma for the decoder's other convs (0: epsilon, the paper's); needs --bn-rule canonical.",
    "eval_every": "Evaluate and checkpoint every N steps.",
    "save_every": "Also save checkpoints/last.pt every N steps between evaluations (0 = off).",
    "log_every": "Log training losses every N steps.",
    "val_images": "Evaluate on the first N validation images only.",
    "workers": "DataLoader worker processes.",
    "seed": "Seed for initialisation, pixel budget and batches.",
    "out": "Parent folder of run folders.",
    "name": "Run folder name (default ARCH-DATA-TIMESTAMP).",
    "weights": "Start from ImageNet weights: imagenet (packaged ones) or a torchvision state dict FILE.",
    "init": "Start from an earlier run folder or checkpoint (same --arch).",
}
"""Command-line help of each field: ``twdeploy train`` makes one flag per field (cli/train.py)."""
NOT_FLAGS = frozenset({"world_size"})
"""Fields set by the run itself (the torchrun process count), not on the command line."""
NONE_ON_COMMAND_LINE = {"pixel_labels": -1}
"""Fields whose default is not None: the command-line value that means None."""
