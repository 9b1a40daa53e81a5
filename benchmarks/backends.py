"""Torch eager vs ONNX Runtime (CPU) on the same export: ms/img (median) and the speed ratio.

python benchmarks/backends.py --archs resnet50,vgg16 --size 256 --classes 21 --selections all,top3 --batches 1,4
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import typer

from twdeploy.export.onnx import save_onnx, to_onnx
from twdeploy.export.verify import ort_runner, torch_runner
from twdeploy.model.card import ModelCard


def _median_ms(run, images: np.ndarray, repeats: int) -> float:
    run(images)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run(images)
        times.append((time.perf_counter() - began) * 1000 / len(images))
    return statistics.median(times)


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
    if threads:
        torch.set_num_threads(threads)
    n = torch.get_num_threads()
    print(
        f"threads: torch {n}, onnxruntime intra-op {n}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, cpus {os.cpu_count()}"
    )
    print(f"{'arch':<10}{'selection':<10}{'batch':>6}{'torch ms/img':>14}{'ORT ms/img':>12}{'ratio':>8}")
    names = tuple(f"c{i}" for i in range(classes))
    for arch in archs.split(","):
        for selection in selections.split(","):
            topk = int(selection[3:]) if selection.startswith("top") else None
            card = ModelCard(arch, names, image_size=(size, size)).with_selection(topk=topk)
            model = card.build().eval()
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.onnx"
                save_onnx(to_onnx(model, card), path)
                ort = ort_runner(path, threads=n)
                for batch in (int(b) for b in batches.split(",")):
                    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
                    t_ms = _median_ms(torch_runner(model), images, repeats)
                    o_ms = _median_ms(ort, images, repeats)
                    print(
                        f"{arch:<10}{selection:<10}{batch:>6}{t_ms:>14.1f}{o_ms:>12.1f}{t_ms / o_ms:>7.2f}x", flush=True
                    )


if __name__ == "__main__":
    typer.run(main)
