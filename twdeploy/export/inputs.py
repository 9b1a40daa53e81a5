"""Real verification inputs: the run's validation images, else built-in synthetic scenes.

A run folder may name its dataset in ``config.json`` (key ``"data"``, a ``build_dataset``
spec such as ``voc:PATH``); its ``val`` split is used when it can be opened here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from twdeploy.data import Normalization, SyntheticScenes, build_dataset, to_input
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard

log = logging.getLogger(__name__)


def dataset_spec(run_dir: Path | None) -> str | None:
    """The ``data`` spec of a run's ``config.json``, if any."""
    config = run_dir / "config.json" if run_dir is not None else None
    if config is None or not config.is_file():
        return None
    try:
        spec = json.loads(config.read_text()).get("data")
    except (json.JSONDecodeError, AttributeError):
        return None
    return spec if isinstance(spec, str) else None


def sample_images(card: ModelCard, count: int, run_dir: Path | None = None) -> tuple[np.ndarray, str]:
    """``count`` preprocessed images ``(count, 3, H, W)`` float32 and a description of where they came from."""
    norm = Normalization.from_dict(card.normalization)
    spec = dataset_spec(run_dir)
    if spec is not None:
        try:
            return _from_dataset(spec, card, norm, count), f"{spec} (val)"
        except (TwdeployError, OSError, IndexError) as exc:
            log.warning("cannot read %s for verification (%s); using synthetic scenes", spec, exc)
    size = min(max(max(card.image_size), 64), 512)
    scenes = SyntheticScenes(count, image_size=size, split="val")
    images = [to_input(scenes.scene(i).image, card.image_size, norm) for i in range(count)]
    return np.stack(images), f"synthetic scenes ({size} px, val)"


def _from_dataset(spec: str, card: ModelCard, norm: Normalization, count: int) -> np.ndarray:
    height, width = card.image_size
    if height != width:
        raise TwdeployError(f"dataset transforms need a square size, the model takes {height}x{width}")
    dataset = build_dataset(spec, "val", height, train=False, norm=norm)
    if len(dataset) == 0:
        raise TwdeployError(f"{spec}: the val split is empty")
    return np.stack([dataset[i % len(dataset)]["image"] for i in range(count)]).astype(np.float32)
