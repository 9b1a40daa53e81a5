"""Torch eager vs ONNX Runtime (CPU) on the same export: ms/img (median) and the speed ratio.

Each backend is timed in its own child process: torch's OpenMP threads (spinning under
OMP_WAIT_POLICY=ACTIVE) and ONNX Runtime's thread pool would otherwise steal each other's cores.
ORT's floor is ``(1 + K') x`` the classifier alone (batch norms folded, exported the same way)
in ONNX Runtime, K' the heatmaps per image: "x floor" is ORT's segmenter time over it.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/backends.py main --archs resnet50,vgg16 --selections all,top3 --batches 1,4
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import typer

from twdeploy.export.onnx import DEFAULT_OPSET, save_onnx, to_onnx
from twdeploy.model import fold_batchnorm
from twdeploy.model.card import ModelCard
from twdeploy.model.io import save_checkpoint
from twdeploy.model.segmenter import Segmenter
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
    allocator.configure()  # as the CLI does (THP_MEM_ALLOC_ENABLE, TWDEPLOY_REUSE_MEMORY)
    torch.set_num_threads(threads)
    runtime = open_backend(model, backend, "cpu", threads=threads if backend == "onnxruntime" else None)
    images = np.random.default_rng(0).random((batch, 3, *runtime.card.image_size), dtype=np.float32)
    print(json.dumps({"ms": _median_ms(runtime.infer, images, repeats)}))


@app.command(hidden=True)
def classifier_child(model: Path, size: int, batch: int, repeats: int, threads: int) -> None:
    """Time the classifier-only ONNX file in ONNX Runtime; print its ms/img as JSON."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    print(json.dumps({"ms": _median_ms(lambda x: session.run(None, {"images": x}), images, repeats)}))


def _save_classifier_onnx(model: Segmenter, size: int, path: Path) -> None:
    """The segmenter's classifier alone (batch norms folded, as the export does), traced like the export."""
    encoder = fold_batchnorm(model).encoder.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes, as in the export
        torch.onnx.export(
            encoder,
            (torch.rand(2, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=DEFAULT_OPSET,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )


def _run_child(*args: object) -> float:
    cmd = [sys.executable, __file__, *(str(a) for a in args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{' '.join(cmd[2:])}: exit {done.returncode}: {last}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


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
    """Print one row per (arch, selection, batch): torch ms/img, ORT ms/img, ratio, ORT against its floor."""
    n = threads or torch.get_num_threads()
    allocator.configure()  # the children do the same
    torch.set_num_threads(1)  # idle OpenMP workers of this process would spin and steal the children's cores
    print(
        f"threads: torch {n}, onnxruntime intra-op {n}, each backend in its own process; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"cpus {os.cpu_count()}, tensor pages: {allocator.describe()}"
    )
    print(
        f"{'arch':<10}{'selection':<10}{'batch':>6}{'torch ms/img':>14}{'ORT ms/img':>12}{'ratio':>8}"
        f"{'ORT classifier ms/img':>23}{'ORT x floor':>13}"
    )
    names = tuple(f"c{i}" for i in range(classes))
    for arch in archs.split(","):
        for selection in selections.split(","):
            topk = int(selection[3:]) if selection.startswith("top") else None
            card = ModelCard(arch, names, image_size=(size, size)).with_selection(topk=topk)
            model = card.build().eval()
            heatmaps = model.selection.count(classes)
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint, onnx_path = Path(tmp) / "model.pt", Path(tmp) / "model.onnx"
                classifier_path = Path(tmp) / "classifier.onnx"
                save_checkpoint(checkpoint, model, card)
                save_onnx(to_onnx(model, card), onnx_path)
                _save_classifier_onnx(model, size, classifier_path)
                for batch in (int(b) for b in batches.split(",")):
                    t_ms = _run_child("child", "torch", checkpoint, batch, repeats, n)
                    o_ms = _run_child("child", "onnxruntime", onnx_path, batch, repeats, n)
                    c_ms = _run_child("classifier-child", classifier_path, size, batch, repeats, n)
                    floor = (1 + heatmaps) * c_ms
                    print(
                        f"{arch:<10}{selection:<10}{batch:>6}{t_ms:>14.1f}{o_ms:>12.1f}{t_ms / o_ms:>7.2f}x"
                        f"{c_ms:>23.1f}{o_ms / floor:>12.2f}x",
                        flush=True,
                    )


if __name__ == "__main__":
    app()
