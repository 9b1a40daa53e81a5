"""Verify an export on the runtime that ``segment`` ships, through Polygraphy's ``Comparator``.

Each backend is a ``twdeploy.runtime`` backend (the same objects ``segment`` runs: input-name
discovery, static-batch padding, fp16 input casting, TensorRT buffers) wrapped as a Polygraphy
runner. ``Comparator.run`` times it (one warm-up batch, then every batch);
``Comparator.compare_accuracy`` judges it against the reference with our own compare function
(``twdeploy.export.compare.judge``: logits bounds, heatmap relative L2, mask agreement).
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, IterationResult, RunResults
from polygraphy.logger import G_LOGGER

from twdeploy.export.compare import Check, Outputs, Tolerance, judge
from twdeploy.runtime import Backend

INPUT = "images"


@dataclass
class Verification:
    """Result of one backend-vs-reference comparison."""

    backend: str
    reference: str
    tolerance: Tolerance
    metrics: dict[str, float]
    checks: list[Check]
    ms_per_image: dict[str, float] = field(default_factory=dict)
    provider: str = ""

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "backend": self.backend,
            "provider": self.provider,
            "reference": self.reference,
            "passed": self.passed,
            "tolerance": self.tolerance.to_dict(),
            "metrics": self.metrics,
            "checks": [c.to_dict() for c in self.checks],
            "ms_per_image": self.ms_per_image,
        }


class BackendRunner(BaseRunner):
    """A ``twdeploy.runtime`` backend as a Polygraphy runner (numpy ``images`` in, named outputs out)."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(name=backend.name, prefix=backend.name)
        self.backend = backend

    def get_input_metadata_impl(self) -> TensorMetadata:
        card = self.backend.card
        return TensorMetadata().add(INPUT, np.float32, (None, card.in_channels, *card.image_size))

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
        images = feed_dict[INPUT]
        began = time.perf_counter()
        out = self.backend.infer(images)
        self.inference_time = time.perf_counter() - began
        return OrderedDict((name, value) for name, value in out._asdict().items() if value is not None)


@dataclass(frozen=True)
class Reference:
    """One backend's outputs on all verification images, and its median speed."""

    name: str
    outputs: Outputs
    ms_per_image: float


def measure(backend: Backend, images: np.ndarray, batch: int) -> Reference:
    """Run ``backend`` on ``images`` in batches of ``batch`` with ``Comparator.run`` (one warm-up batch)."""
    loader = [{INPUT: images[start : start + batch]} for start in range(0, len(images), batch)]
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        results = Comparator.run([BackendRunner(backend)], data_loader=loader, warm_up=1)
    _, iterations = results[0]
    outputs = {name: np.concatenate([np.asarray(it[name]) for it in iterations]) for name in iterations[0]}
    ms = statistics.median(it.runtime * 1000 / len(feed[INPUT]) for it, feed in zip(iterations, loader, strict=True))
    return Reference(backend.name, outputs, ms)


class JudgeCompare:
    """Polygraphy compare function: ``judge`` the candidate against the reference; keeps what it found."""

    def __init__(self, tol: Tolerance) -> None:
        self.tol = tol
        self.metrics: dict[str, float] = {}
        self.checks: list[Check] = []

    def __call__(self, reference: IterationResult, candidate: IterationResult) -> OrderedDict[str, bool]:
        as_numpy = {name: np.asarray(reference[name]) for name in reference}
        self.metrics, self.checks = judge(as_numpy, {name: np.asarray(candidate[name]) for name in candidate}, self.tol)
        return OrderedDict((c.name, c.passed) for c in self.checks)


def verify_against(
    backend: Backend, ref: Reference, images: np.ndarray, batch: int, tol: Tolerance
) -> tuple[Verification, Reference]:
    """Run ``backend`` on ``images`` and judge it against ``ref`` with ``Comparator.compare_accuracy``."""
    run = measure(backend, images, batch)
    results = RunResults()
    for item in (ref, run):
        results.append((item.name, [IterationResult(dict(item.outputs), item.ms_per_image / 1000, item.name)]))
    compare = JudgeCompare(tol)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        Comparator.compare_accuracy(results, comparisons=[(0, 1)], compare_func=compare)
    timing = {ref.name: ref.ms_per_image, run.name: run.ms_per_image}
    verification = Verification(run.name, ref.name, tol, compare.metrics, compare.checks, timing, backend.provider)
    return verification, run
