"""Backends x batch sizes on one model, each backend in its own process: ms/img, img/s, peak memory, speed-up.

Memory is the peak process RSS above the level before the backend was loaded (weights,
session arenas and activations together), or the CUDA allocator's peak for torch and
TensorRT on a GPU.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from twdeploy.errors import TwdeployError
from twdeploy.runtime import BACKEND_NAMES, Backend, allocator, detect_backend, layout, open_backend

RUN_EXPORTS = {"onnxruntime": "export/model.onnx", "tensorrt": "export/model.engine"}


@dataclass(frozen=True)
class BenchResult:
    """One backend at one batch size."""

    backend: str
    provider: str
    device: str
    model: str
    batch: int
    ms_per_image: float
    images_per_s: float
    peak_mib: float | None
    memory: str
    speedup_vs_torch: float | None = None
    pid: int = 0
    """The process that ran it (each backend gets its own)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        return asdict(self)


def candidates(model: str | Path, backends: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """(backend, model file) pairs for ``model``: a run folder also brings its ``export/model.onnx`` / ``.engine``."""
    path = Path(model)
    if not path.exists():
        raise TwdeployError(f"{path}: no such file or run folder; check the path")
    unknown = set(backends or ()) - set(BACKEND_NAMES)
    if unknown:
        raise TwdeployError(f"--backends {','.join(sorted(unknown))}: unknown; choose from {', '.join(BACKEND_NAMES)}")
    found = [(detect_backend(path), path)]
    if path.is_dir():
        found += [(name, path / rel) for name, rel in RUN_EXPORTS.items() if (path / rel).is_file()]
    chosen = [(name, file) for name, file in found if backends is None or name in backends]
    if not chosen:
        have = ", ".join(name for name, _ in found)
        raise TwdeployError(f"{path}: none of --backends {','.join(backends or ())} applies; this model has {have}")
    return chosen


def thread_settings(threads: int | None) -> dict[str, str]:
    """The thread counts, OpenMP/MKL variables, tensor pages and image layout that decide CPU speed."""
    env = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    return {
        "cpu_cores": str(os.cpu_count()),
        "torch_intra_op": str(torch.get_num_threads()),
        "torch_inter_op": str(torch.get_num_interop_threads()),
        "onnxruntime_intra_op": str(threads) if threads else "default (one per physical core)",
        **env,
        "tensor_pages": allocator.describe(),
        "torch_image_layout": layout.rule(),
    }


class _RssPeak:
    """Samples this process's resident memory in a thread; ``peak`` is the highest seen, in bytes."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _RssPeak:
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="twdeploy-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    """Resident set size in bytes (Linux /proc; 0 where it does not exist)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def time_batches(backend: Backend, batch: np.ndarray, warmup: int, runs: int) -> float:
    """Median seconds per ``backend.infer(batch)`` over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        backend.infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def _cuda_peak(device: str) -> Iterator[list[float]]:
    """Yields a one-item list that receives the CUDA allocator's peak MiB on exit."""
    torch.cuda.reset_peak_memory_stats(device)
    box: list[float] = []
    yield box
    box.append(torch.cuda.max_memory_allocated(device) / 2**20)


def bench_backend(
    name: str, file: Path, batches: Sequence[int], warmup: int, runs: int, device: str, threads: int | None
) -> list[BenchResult]:
    """Load ``file`` on backend ``name`` once and time every batch size."""
    base = _rss()
    with _RssPeak() as rss:
        backend = open_backend(file, name, device, threads=threads)
    try:
        card = backend.card
        rng = np.random.default_rng(0)
        cuda = backend.device.startswith("cuda") and name != "onnxruntime"
        results = []
        for size in batches:
            images = rng.random((size, card.in_channels, *card.image_size), dtype=np.float32)
            if cuda:
                with _cuda_peak(backend.device) as box:
                    seconds = time_batches(backend, images, warmup, runs)
                peak, memory = box[0], "CUDA max allocated"
            else:
                with rss:
                    seconds = time_batches(backend, images, warmup, runs)
                peak, memory = (rss.peak - base) / 2**20 if base else None, "RSS delta"
            results.append(
                BenchResult(
                    name, backend.provider, backend.device, str(file), size,
                    seconds * 1000 / size, size / seconds, peak, memory, pid=os.getpid(),
                )
            )  # fmt: skip
        return results
    finally:
        backend.close()


def _bench_child(
    name: str, file: Path, batches: Sequence[int], warmup: int, runs: int, device: str, threads: int | None
) -> list[BenchResult]:
    allocator.configure()
    if threads:
        torch.set_num_threads(threads)
    return bench_backend(name, file, batches, warmup, runs, device, threads)


def bench_in_own_process(
    name: str, file: Path, batches: Sequence[int], warmup: int, runs: int, device: str, threads: int | None
) -> list[BenchResult]:
    """:func:`bench_backend` in a fresh (spawned) process: backends timed in one process skew each other."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_bench_child, name, file, list(batches), warmup, runs, device, threads).result()
        except BrokenProcessPool:
            raise TwdeployError(
                f"{file}: the {name} benchmark process died (out of memory?); try smaller --batches"
            ) from None


def with_speedups(results: list[BenchResult]) -> list[BenchResult]:
    """Fill ``speedup_vs_torch`` from the torch result at the same batch size."""
    torch_ms = {r.batch: r.ms_per_image for r in results if r.backend == "torch"}
    return [
        replace(r, speedup_vs_torch=torch_ms[r.batch] / r.ms_per_image if r.batch in torch_ms else None)
        for r in results
    ]


def run_benchmark(
    model: str | Path,
    batches: Sequence[int] = (1, 4),
    backends: Sequence[str] | None = None,
    warmup: int = 3,
    runs: int = 10,
    device: str = "auto",
    threads: int | None = None,
) -> tuple[list[BenchResult], list[str]]:
    """Every available backend for ``model`` x ``batches``; also returns why any backend was skipped."""
    if not batches or min(batches) < 1 or runs < 1 or warmup < 0:
        raise TwdeployError("--batches must be positive integers, --runs >= 1 and --warmup >= 0")
    if threads:
        torch.set_num_threads(threads)
    results: list[BenchResult] = []
    skipped: list[str] = []
    for name, file in candidates(model, backends):
        try:
            results += bench_in_own_process(name, file, batches, warmup, runs, device, threads)
        except TwdeployError as exc:
            skipped.append(f"{name}: {exc}")
    if not results:
        raise TwdeployError("no backend could run this model: " + "; ".join(skipped))
    return with_speedups(results), skipped
