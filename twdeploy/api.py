"""The Python API, symmetric with the CLI: ``twdeploy.load(path)`` and ``twdeploy.train(...)``.

::

    model = twdeploy.load("runs/demo/export/model.onnx")     # run folder, .pt, .onnx, .engine or triton:// URL
    for result in model.predict("photos/", stream=True):    # SegmentResult per image
        print(result.path, result.mask.shape, result.tags())
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from twdeploy.errors import TwdeployError
from twdeploy.inference.arrays import array_source, is_in_memory
from twdeploy.inference.predictor import predict_stream
from twdeploy.inference.results import SegmentResult
from twdeploy.inference.sources import Skipped, Source, open_source
from twdeploy.model.card import ModelCard
from twdeploy.model.segmenter import parse_memory
from twdeploy.runtime import Backend, open_backend
from twdeploy.runtime.allocator import configure as configure_allocator
from twdeploy.runtime.base import is_triton_url

logger = logging.getLogger(__name__)


def open_any_source(source: Any, vid_stride: int = 1) -> Source:
    """What ``twdeploy segment`` reads (path, glob, video, webcam index, URL), or in-memory images."""
    if is_in_memory(source):
        return array_source(source)
    if isinstance(source, str | Path | int):
        return open_source(str(source), vid_stride)
    raise TwdeployError(
        f"{type(source).__name__} is not a source: give a path, glob, URL, webcam index, numpy array, "
        "PIL image, tensor, or a list of images"
    )


class Model:
    """A loaded model on one backend, with the CLI's commands as methods."""

    def __init__(
        self,
        path: str | Path,
        backend: str = "auto",
        device: str = "auto",
        half: bool = False,
        max_memory: int | str | None = None,
    ) -> None:
        self.path: str | Path = path if is_triton_url(path) else Path(path)
        budget = None if max_memory is None else parse_memory(max_memory, "max_memory")
        self.runtime: Backend = open_backend(self.path, backend, device, half, max_memory=budget)

    @property
    def card(self) -> ModelCard:
        """The model card: architecture, class names, input size, preprocessing."""
        return self.runtime.card

    @property
    def names(self) -> tuple[str, ...]:
        """Class names, background first."""
        return tuple(self.card.class_names)

    def predict(
        self, source: Any, stream: bool = False, batch: int = 1, vid_stride: int = 1
    ) -> Iterator[SegmentResult] | list[SegmentResult]:
        """Segment ``source``: a generator of results with ``stream=True``, else a list.

        Unusable items are logged (warning) and skipped, as ``twdeploy segment`` reports them.
        """
        results = self._stream(open_any_source(source, vid_stride), batch)
        return results if stream else list(results)

    __call__ = predict

    def _stream(self, source: Source, batch: int) -> Iterator[SegmentResult]:
        items = predict_stream(self.runtime, source, batch, source.is_live)
        try:
            for item in items:
                if isinstance(item, Skipped):
                    logger.warning("skipped %s: %s", item.name, item.reason)
                else:
                    yield item
        finally:
            items.close()
            source.close()

    def val(self, data: str = "synthetic", split: str = "val", batch: int = 16, max_images: int | None = None) -> Any:
        """mIoU, per-class IoU, pixel accuracy and tag F1 on ``data`` (``twdeploy eval``), on this backend."""
        from twdeploy.training.evaluate import evaluate_backend

        return evaluate_backend(self.runtime, data, split, batch, max_images)

    def export(self, **options: Any) -> Any:
        """``twdeploy export`` of a run folder or checkpoint; ``options`` are ``ExportOptions`` fields.

        ``batch`` may be given as on the command line (``4`` or ``"1,4,8"``), ``out`` as a string,
        ``outputs`` as ``"mask"`` or ``"mask,heatmaps"``.
        ``max_memory`` as bytes or a size (``"2GB"``).
        """
        from twdeploy.export.batch import BatchProfile, parse_batch
        from twdeploy.export.pipeline import ExportOptions, export

        if self.runtime.name != "torch":
            raise TwdeployError(f"{self.path}: only a run folder or .pt checkpoint can be exported")
        known = {f.name for f in dataclasses.fields(ExportOptions)}
        unknown = set(options) - known
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TwdeployError(f"export: unknown option(s) {names}; use {', '.join(sorted(known))}")
        if "batch" in options and not isinstance(options["batch"], BatchProfile):
            options["batch"] = parse_batch(str(options["batch"]))
        if options.get("out") is not None:
            options["out"] = Path(options["out"])
        if options.get("classes") is not None:
            options["classes"] = tuple(options["classes"])
        if isinstance(options.get("outputs"), str):
            options["outputs"] = tuple(p.strip() for p in options["outputs"].split(","))
        if options.get("max_memory") is not None:
            options["max_memory"] = parse_memory(options["max_memory"], "max_memory")
        return export(self.path, ExportOptions(**options))

    def benchmark(self, batches: Sequence[int] = (1, 4), **options: Any) -> Any:
        """``twdeploy benchmark`` of this model file (and, for a run folder, its exports)."""
        from twdeploy.inference.benchmark import run_benchmark

        return run_benchmark(self.path, batches, **options)

    def close(self) -> None:
        """Release the session / engine / model."""
        self.runtime.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        card = self.card
        return f"Model({str(self.path)!r}, {card.arch}, {card.num_classes} classes, {self.runtime.provider})"


def load(
    path: str | Path,
    backend: str = "auto",
    device: str = "auto",
    half: bool = False,
    max_memory: int | str | None = None,
) -> Model:
    """Load a run folder, ``.pt`` checkpoint, ``.onnx`` file, TensorRT ``.engine`` or served model.

    A served model is a Triton URL: ``triton://HOST[:PORT]/NAME`` (HTTP) or ``triton+grpc://HOST[:PORT]/NAME``.
    ``max_memory`` (bytes, or a size such as ``"2GB"`` or ``"512MiB"``; default 1 GiB) bounds a torch
    model's decoder tensors: the classes are decoded in chunks that fit, with the same heatmaps.
    Like the CLI, it sets up tensor memory first (:func:`twdeploy.runtime.allocator.configure`).
    """
    configure_allocator()
    return Model(path, backend, device, half, max_memory)


def val(
    *models: str | Path,
    data: str = "synthetic",
    split: str = "val",
    batch: int = 16,
    device: str = "auto",
    max_images: int | None = None,
    exports: bool = False,
) -> list[Any]:
    """``twdeploy eval MODEL [MODEL ...]``: each model (``exports``: a run's export/ models too) on the same set.

    Returns one ``FormatResult`` per model: ``format``, ``provider``, ``size_mb`` and ``result``
    (the ``EvalResult``: ``miou``, ``iou``, ``pixel_accuracy``, ``f1``), or its ``error``.
    """
    from twdeploy.training.evaluate import evaluate_formats

    return evaluate_formats(models, data, split, batch, device, max_images, with_exports=exports)


def train(resume: str | Path | None = None, **config: Any) -> Model:
    """``twdeploy train``: ``config`` are ``TrainConfig`` fields; returns the trained run folder loaded."""
    from twdeploy.training.config import TrainConfig
    from twdeploy.training.trainer import resume as resume_run
    from twdeploy.training.trainer import train as train_run

    configure_allocator()
    if resume is not None:
        result = resume_run(resume)
    else:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(config) - known
        if unknown:
            raise TwdeployError(f"train: unknown option(s) {', '.join(sorted(unknown))}; see TrainConfig")
        result = train_run(TrainConfig(**config))
    return load(result.run_dir)
