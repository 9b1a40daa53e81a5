"""Torch eager vs ONNX Runtime (CPU) on the same export: ms/img (median) and the speed ratio.

Each backend is timed in its own child process: torch's OpenMP threads (spinning under
OMP_WAIT_POLICY=ACTIVE) and ONNX Runtime's thread pool would otherwise steal each other's cores.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/backends.py --archs resnet50,vgg16 --selections all,top3 --batches 1,4
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import typer

from twdeploy.export.onnx import save_onnx, to_onnx
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint
from twdeploy.runtime import allocator, open_backend

app = typer.Typer(add_completion=False)


def _median_ms(run, images: np.ndarray, repeats: int) -> float:
    run(images)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run(images)
        times.append((time.perf_counter() - began) * 1000 / len(images))
    return statistics.median(times)


@app.command(hidden=True)
def child(backend: str, model: Path, batch: int, repeats: int, threads: int) -> None:
    """Time one backend on one model file; print its ms/img as JSON."""
    allocator.use_huge_pages()  # as the CLI does; THP_MEM_ALLOC_ENABLE=0 measures without
    torch.set_num_threads(threads)
    runtime = open_backend(model, backend, "cpu", threads=threads if backend == "onnxruntime" else None)
    images = np.random.default_rng(0).random((batch, 3, *runtime.card.image_size), dtype=np.float32)
    print(json.dumps({"ms": _median_ms(runtime.infer, images, repeats)}))


def _measure(backend: str, model: Path, batch: int, repeats: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "child", backend, str(model), str(batch), str(repeats), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["ms"])


@app.command()
def main(
    archs: str = "resnet50,vgg16",
    size: int = 256,
    classes: int = 21,
    selections: str = "all,top3",
    batches: str = "1,4",
    repeats: int = 5,
    threads: int = 0,
) -> None:
    """Print one row per (arch, selection, batch): torch ms/img, ORT ms/img, ratio."""
    n = threads or torch.get_num_threads()
    allocator.use_huge_pages()  # the children do the same
    torch.set_num_threads(1)  # idle OpenMP workers of this process would spin and steal the children's cores
    print(
        f"threads: torch {n}, onnxruntime intra-op {n}, each backend in its own process; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"cpus {os.cpu_count()}, tensor pages: {allocator.describe()}"
    )
    print(f"{'arch':<10}{'selection':<10}{'batch':>6}{'torch ms/img':>14}{'ORT ms/img':>12}{'ratio':>8}")
    names = tuple(f"c{i}" for i in range(classes))
    for arch in archs.split(","):
        for selection in selections.split(","):
            topk = int(selection[3:]) if selection.startswith("top") else None
            card = ModelCard(arch, names, image_size=(size, size)).with_selection(topk=topk)
            model = card.build().eval()
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint, onnx_path = Path(tmp) / "model.pt", Path(tmp) / "model.onnx"
                save_checkpoint(checkpoint, model, card)
                save_onnx(to_onnx(model, card), onnx_path)
                for batch in (int(b) for b in batches.split(",")):
                    t_ms = _measure("torch", checkpoint, batch, repeats, n)
                    o_ms = _measure("onnxruntime", onnx_path, batch, repeats, n)
                    print(
                        f"{arch:<10}{selection:<10}{batch:>6}{t_ms:>14.1f}{o_ms:>12.1f}{t_ms / o_ms:>7.2f}x", flush=True
                    )


if __name__ == "__main__":
    app()
