"""``SegmentResult``: one segmented image with everything a user needs from it (Ultralytics-style)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twdeploy.inference.render import class_name, overlay
from twdeploy.inference.sources import Frame


@dataclass
class SegmentResult:
    """Masks, heatmaps and tag probabilities of one frame.

    ``orig_img`` is the image as read (8-bit BGR, OpenCV's order), ``mask`` its class ids at the
    original size, ``heatmaps[i]`` the model-size heatmap of class ``class_ids[i]`` (None for a
    model exported with ``--outputs mask``), ``tag_probs`` the sigmoid of the logits (one per
    class), ``speed`` milliseconds per stage.
    """

    frame: Frame
    mask: np.ndarray
    heatmaps: np.ndarray | None
    class_ids: list[int]
    tag_probs: np.ndarray
    names: tuple[str, ...]
    speed: dict[str, float] = field(default_factory=dict)

    @property
    def orig_img(self) -> np.ndarray:
        """The image as read: (H, W, 3) uint8 BGR."""
        return self.frame.image

    @property
    def path(self) -> str:
        """Where the frame came from (file, video, stream URL, or ``array<i>``)."""
        return self.frame.source

    @property
    def name(self) -> str:
        """The frame's unique output name."""
        return self.frame.name

    def tags(self, threshold: float = 0.5) -> dict[str, float]:
        """Classes whose tag probability reaches ``threshold``, name -> probability."""
        return {self.names[i]: float(p) for i, p in enumerate(self.tag_probs) if p >= threshold}

    def plot(self, alpha: float = 0.5, classes: Collection[int] | None = None) -> np.ndarray:
        """The mask blended over ``orig_img`` with a legend (BGR, original size)."""
        return overlay(self.orig_img, self.mask, alpha, self.names, classes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: classes present with pixel fractions, tag probabilities, timings."""
        return {**frame_record(self.frame, self.mask, self.names, self.speed), "tag_probs": self.tag_dict()}

    def tag_dict(self) -> dict[str, float]:
        """Every class's tag probability, name -> probability (6 decimals)."""
        return {class_name(i, self.names): round(float(p), 6) for i, p in enumerate(self.tag_probs)}

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict())

    def save(self, out_dir: str | Path, items: Collection[str] = ("mask", "overlay", "json")) -> Path:
        """Write this result as ``twdeploy segment`` would (masks/, overlays/, heatmaps/, results.jsonl)."""
        from twdeploy.inference.sinks import SegmentWriter

        with SegmentWriter(out_dir, self.names, items) as writer:
            writer.write(self.frame, self.mask, self.heatmaps, self.class_ids, self.speed, extra=self.extras())
        return Path(out_dir)

    def extras(self) -> dict[str, Any]:
        """What a results.jsonl record adds to the frame's own fields."""
        return {"tag_probs": self.tag_dict()}


def frame_record(
    frame: Frame, mask: np.ndarray, names: Sequence[str] | None, timings: dict[str, float]
) -> dict[str, Any]:
    """A frame's JSON record: where it came from, its size, classes present with pixel fractions, timings."""
    counts = np.bincount(mask.ravel().astype(np.int64))
    total = mask.size
    present = [
        {"id": int(c), "name": class_name(int(c), names), "fraction": round(int(n) / total, 6)}
        for c, n in enumerate(counts)
        if n
    ]
    return {
        "name": frame.name,
        "source": frame.source,
        "kind": frame.kind,
        "frame_index": frame.frame_index,
        "width": frame.size[1],
        "height": frame.size[0],
        "classes": present,
        "timings_ms": {
            "decode": round(frame.decode_ms, 3),
            **{k: round(v, 3) for k, v in timings.items() if k != "decode"},
        },
    }
