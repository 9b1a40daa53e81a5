"""The paper's protocol as one run folder: a tags-only classify stage, then the segment stage from its weights.

A ``--recipe paper`` run ``runs/NAME/`` keeps its classify stage as a run folder of its own,
``runs/NAME/classify/`` (config ``stage: classify``); the segment stage is ``runs/NAME`` itself
and starts from ``classify/checkpoints/last.pt``. Whether the segment stage has begun is
whether ``runs/NAME/checkpoints/last.pt`` exists, so ``--resume`` continues the right stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from twdeploy.training.config import TrainConfig

CLASSIFY_FOLDER = "classify"


def classify_stage_config(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """The config of a recipe's classify stage: same data and net, ``classify_steps`` steps, no recipe."""
    return replace(
        cfg,
        stage="classify",
        recipe=None,
        steps=cfg.classify_steps,
        epochs=None,
        out=str(run_dir),
        name=CLASSIFY_FOLDER,
    )


def classify_stage_dir(run_dir: Path) -> Path:
    """Where a recipe run keeps its classify stage."""
    return run_dir / CLASSIFY_FOLDER


def segment_stage_started(run_dir: Path) -> bool:
    """True once the segment stage of a recipe run has written a checkpoint."""
    return (run_dir / "checkpoints" / "last.pt").is_file()
