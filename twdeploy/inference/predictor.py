"""The segment pipeline: source -> prefetch (decode + preprocess) -> batches -> backend -> results -> writer.

Decoding and preprocessing run in a background thread ahead of inference; bad items are
counted with their reasons and never stop the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twdeploy.data.transforms import Normalization, to_input
from twdeploy.inference.display import Viewer
from twdeploy.inference.prefetch import batched, prefetch
from twdeploy.inference.render import overlay, resize_mask
from twdeploy.inference.results import SegmentResult
from twdeploy.inference.sinks import SegmentWriter
from twdeploy.inference.sources import Frame, Skipped
from twdeploy.model.card import ModelCard
from twdeploy.runtime import Backend, Outputs

STAGES = ("decode", "preprocess", "inference", "postprocess")
LIVE_MAX_WAIT_S = 0.05


@dataclass(frozen=True)
class Prepared:
    """A decoded frame and its network input."""

    frame: Frame
    tensor: np.ndarray
    preprocess_ms: float


class Preprocessor:
    """BGR frame -> float32 (3, H, W) at the card's image size and normalization; Skipped passes through."""

    def __init__(self, card: ModelCard) -> None:
        self.size = card.image_size
        self.norm = Normalization.from_dict(card.normalization)

    def __call__(self, item: Frame | Skipped) -> Prepared | Skipped:
        if isinstance(item, Skipped):
            return item
        start = time.perf_counter()
        tensor = to_input(np.ascontiguousarray(item.image[:, :, ::-1]), self.size, self.norm)
        return Prepared(item, tensor, (time.perf_counter() - start) * 1000)


def masks_at_original_size(outputs: Outputs, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """The batch's class-id masks (the graph's own, or the heatmaps' argmax), nearest-resized to each (H, W)."""
    return [resize_mask(mask, size) for mask, size in zip(outputs.masks(), sizes, strict=True)]


@dataclass
class SegmentSummary:
    """What a run did: counts, skipped items with reasons, per-stage times and throughput."""

    out_dir: Path
    batch_shape: tuple[int, ...]
    written: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    elapsed_s: float = 0.0
    stopped: bool = False
    interrupted: KeyboardInterrupt | None = None
    """Set when Ctrl-C or SIGTERM ended the run early; everything written so far is complete."""

    def per_image_ms(self) -> dict[str, float]:
        """Mean milliseconds per written image for each stage."""
        return {k: v / max(1, self.written) for k, v in self.stage_ms.items()}

    @property
    def fps(self) -> float:
        """End-to-end images per second (wall clock, everything included)."""
        return self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def speed_line(self) -> str:
        """``Speed: 2.1ms decode, 1.0ms preprocess, ... per image at shape (4, 3, 256, 256)``."""
        parts = ", ".join(f"{ms:.1f}ms {stage}" for stage, ms in self.per_image_ms().items())
        return f"Speed: {parts} per image at shape {self.batch_shape}"


def predict_stream(
    backend: Backend, source: Iterable[Frame | Skipped], batch_size: int = 1, live: bool = False
) -> Iterator[SegmentResult | Skipped]:
    """Segment every frame of ``source`` in batches of ``batch_size``; unusable items come out as ``Skipped``.

    Decoding and preprocessing run ahead in a background thread; ``live`` sources send a
    partial batch rather than wait for a full one.
    """
    items = prefetch(source, Preprocessor(backend.card), depth=max(4, 2 * batch_size))
    try:
        for batch in batched(items, batch_size, LIVE_MAX_WAIT_S if live else None):
            yield from batch.skipped
            if batch.items:
                yield from _infer_batch(backend, batch.items)
    finally:
        items.close()


def _infer_batch(backend: Backend, prepared: list[Prepared]) -> Iterator[SegmentResult]:
    """Infer one batch and turn its outputs into one result per frame."""
    n = len(prepared)
    t0 = time.perf_counter()
    out = backend.infer(np.stack([p.tensor for p in prepared]))
    t1 = time.perf_counter()
    masks = masks_at_original_size(out, [p.frame.size for p in prepared])
    probs = 1.0 / (1.0 + np.exp(-out.logits.astype(np.float64)))
    post_ms = (time.perf_counter() - t1) * 1000 / n
    infer_ms = (t1 - t0) * 1000 / n
    names = tuple(backend.card.class_names)
    for i, (p, mask) in enumerate(zip(prepared, masks, strict=True)):
        heatmaps = None if out.heatmaps is None else out.heatmaps[i]
        if out.class_ids is not None:
            ids = [int(c) for c in out.class_ids[i]]
        else:
            ids = [] if heatmaps is None else list(range(len(heatmaps)))
        speed = {"decode": p.frame.decode_ms, "preprocess": p.preprocess_ms}
        speed |= {"inference": infer_ms, "postprocess": post_ms}
        yield SegmentResult(p.frame, mask, heatmaps, ids, probs[i].astype(np.float32), names, speed)


def run_segment(
    backend: Backend,
    source: Iterable[Frame | Skipped],
    writer: SegmentWriter,
    batch_size: int = 1,
    live: bool = False,
    viewer: Viewer | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SegmentSummary:
    """Save every result of :func:`predict_stream` with ``writer`` (overlay rendered once per frame)."""
    card = backend.card
    summary = SegmentSummary(writer.out_dir, (batch_size, card.in_channels, *card.image_size))
    start = time.perf_counter()
    results = predict_stream(backend, source, batch_size, live)
    showing = viewer is not None and viewer.active
    try:
        for result in results:
            if isinstance(result, Skipped):
                summary.skipped.append(result)
            elif not _keep(result, writer, summary, viewer if showing else None):
                summary.stopped = True
                break
            if on_progress is not None:
                on_progress(1)
    except KeyboardInterrupt as exc:  # the caller reports what was done, then re-raises
        summary.interrupted = exc
    finally:
        results.close()
        summary.elapsed_s = time.perf_counter() - start
    return summary


def _keep(result: SegmentResult, writer: SegmentWriter, summary: SegmentSummary, viewer: Viewer | None) -> bool:
    """Write one result and show it; False when the viewer asked to stop."""
    drawn = viewer is not None or writer.draws(result.frame)
    shown = overlay(result.orig_img, result.mask, writer.alpha, writer.names, writer.classes) if drawn else None
    timings = {k: v for k, v in result.speed.items() if k != "decode"}
    writer.write(result.frame, result.mask, result.heatmaps, result.class_ids, timings, shown, result.extras())
    for stage, ms in result.speed.items():
        summary.stage_ms[stage] += ms
    summary.written += 1
    return viewer is None or viewer.show(shown)
