"""The run folder's logs: ``metrics.jsonl`` (one JSON object a line) and ``curves.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunLog:
    """Appends metrics records to ``metrics.jsonl`` and draws loss / mIoU curves from them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "metrics.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (``kind`` is ``train`` or ``eval``)."""
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run repeats them)."""
        kept = [r for r in self.records() if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def records(self) -> list[dict[str, Any]]:
        """All records so far."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def plot(self) -> Path:
        """Write ``curves.png``: training loss and validation mIoU against step."""
        records = self.records()
        train = [r for r in records if r["kind"] == "train" and math.isfinite(r["loss"])]
        evals = [r for r in records if r["kind"] == "eval"]
        from matplotlib.figure import Figure  # imported here; a Figure needs no pyplot and no global backend

        fig = Figure(figsize=(10, 3.8))
        ax_loss, ax_miou = fig.subplots(1, 2)
        for key, label in (("loss", "total"), ("cls", "tags (unweighted)"), ("seg", "pixels")):
            points = [(r["step"], r[key]) for r in train if key in r]  # a classify stage logs no pixel loss
            ax_loss.plot([p[0] for p in points], [p[1] for p in points], label=label)
        ax_loss.set(xlabel="step", ylabel="loss", title="training loss", yscale="log")
        ax_loss.legend()
        ax_miou.plot([r["step"] for r in evals], [r["miou"] for r in evals], marker="o", label="mIoU")
        ax_miou.plot([r["step"] for r in evals], [r["f1"] for r in evals], marker=".", label="tag F1")
        ax_miou.set(xlabel="step", ylim=(0, 1), title="validation")
        ax_miou.legend()
        fig.tight_layout()
        out = self.folder / "curves.png"
        fig.savefig(out, dpi=100)
        return out
