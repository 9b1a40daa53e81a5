"""Run an export and its reference on the same real inputs; measure errors and speed.

ONNX Runtime (CPU provider unless told otherwise) is compared with the torch model; a
TensorRT engine is compared with ONNX Runtime (``twdeploy.export.tensorrt``). Limits and
measures: ``twdeploy.export.compare``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twdeploy.export.compare import Check, Outputs, Tolerance, judge
from twdeploy.model.segmenter import Segmenter

Runner = Callable[[np.ndarray], Outputs]


@dataclass
class Verification:
    """Result of one backend-vs-reference comparison."""

    backend: str
    reference: str
    tolerance: Tolerance
    metrics: dict[str, float]
    checks: list[Check]
    ms_per_image: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "backend": self.backend,
            "reference": self.reference,
            "passed": self.passed,
            "tolerance": self.tolerance.to_dict(),
            "metrics": self.metrics,
            "checks": [c.to_dict() for c in self.checks],
            "ms_per_image": self.ms_per_image,
        }


def run_batched(runner: Runner, images: np.ndarray, batch: int) -> tuple[Outputs, float]:
    """All outputs for ``images`` in batches of ``batch``, and the median ms per image.

    The first batch runs once more beforehand as a warm-up and is not timed.
    """
    runner(images[:batch])
    parts: list[Outputs] = []
    times = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        began = time.perf_counter()
        parts.append(runner(chunk))
        times.append((time.perf_counter() - began) * 1000 / len(chunk))
    outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return outputs, statistics.median(times)


def torch_runner(model: Segmenter) -> Runner:
    """The torch model (float32, CPU) as a runner."""
    names = model.output_names

    def run(images: np.ndarray) -> Outputs:
        with torch.no_grad():
            outputs = model(torch.from_numpy(images))
        return {name: t.numpy() for name, t in zip(names, outputs, strict=True)}

    return run


def ort_runner(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int | None = None) -> Runner:
    """An ONNX Runtime session as a runner; intra-op threads default to torch's thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    names = [o.name for o in session.get_outputs()]

    def run(images: np.ndarray) -> Outputs:
        return dict(zip(names, session.run(names, {"images": images}), strict=True))

    return run


@dataclass(frozen=True)
class Reference:
    """Outputs of the reference backend on the verification images, and its speed."""

    name: str
    outputs: Outputs
    ms_per_image: float


def reference(name: str, runner: Runner, images: np.ndarray, batch: int) -> Reference:
    """Run the reference once; every backend is judged against these outputs."""
    outputs, ms = run_batched(runner, images, batch)
    return Reference(name, outputs, ms)


def verify_against(
    name: str, runner: Runner, ref: Reference, images: np.ndarray, batch: int, tol: Tolerance
) -> tuple[Verification, Outputs]:
    """Run ``runner`` on ``images`` and judge it against ``ref``; also returns its outputs."""
    outputs, ms = run_batched(runner, images, batch)
    metrics, checks = judge(ref.outputs, outputs, tol)
    timing = {ref.name: ref.ms_per_image, name: ms}
    return Verification(name, ref.name, tol, metrics, checks, timing), outputs
