"""Relevance decoder cost on the CPU: one pass over all classes vs a class-by-class loop.

Prints, per architecture and batch size: forward only; all classes in one decoder pass; the
reference-style loop that recomputes the forward (pre-activations, batch-norm outputs,
residual sums) for every class (the baseline); background + top-k. Ratios are against the
loop measured in the same run, and against the floor ``(1 + K) x forward`` (same run);
GFLOP/s against a large matmul measured in the same run.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --archs resnet50 vgg16 --batches 1 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from twdeploy import Segmenter
from twdeploy.model import fold_batchnorm


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch dispatches for one call."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_gflops(repeats: int) -> float:
    """Achieved GFLOP/s of a 2048^3 float32 matmul: the machine's practical peak."""
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    return 2 * 2048**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def variants(arch: str, classes: int, topk: int, chunk: int | None) -> dict[str, Callable[[torch.Tensor], object]]:
    """The measured computations, each a function of the input batch."""
    unfolded = Segmenter(arch, num_classes=classes, class_chunk=chunk)
    top = Segmenter(arch, num_classes=classes, topk=topk, class_chunk=chunk)
    top.load_state_dict(unfolded.state_dict())
    full, top = fold_batchnorm(unfolded), fold_batchnorm(top)  # as export and segment run them

    def loop(x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for c in range(classes):
            logits, saved = full.encode(x)  # the reference recomputes everything per class
            maps.append(full.decode(saved, full.start_relevance(logits)[0][:, c : c + 1]))
        return maps

    return {
        "forward only": lambda x: full.encoder(x),
        f"loop over {classes} classes (baseline)": loop,
        f"one pass, {classes} classes": full,
        f"one pass, background + top-{topk}": top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["resnet50", "vgg16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--class-chunk", type=int, default=None, help="bound decoder memory (same result)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    console.print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, input {args.size}x{args.size}"
    )
    peak = matmul_gflops(args.repeats)
    console.print(f"reference: 2048^3 float32 matmul at {peak:.1f} GFLOP/s")
    table = Table(title="relevance decoder, CPU (median of runs)")
    columns = ("arch", "batch", "variant", "s/batch", "ms/img", "speed-up vs loop", "x floor", "GFLOP/s", "% of matmul")
    for col in columns:
        table.add_column(col, justify="left" if col in ("arch", "variant") else "right")
    torch.manual_seed(0)
    with torch.no_grad():
        for arch in args.archs:
            runs = variants(arch, args.classes, args.topk, args.class_chunk)
            for batch in args.batches:
                x = torch.rand(batch, 3, args.size, args.size)
                results = {}
                for name, fn in runs.items():
                    seconds = median_seconds(lambda fn=fn, x=x: fn(x), args.repeats)
                    results[name] = (seconds, count_flops(lambda fn=fn, x=x: fn(x)))
                baseline = next(s for n, (s, _) in results.items() if "baseline" in n)
                floor = (1 + args.classes) * results["forward only"][0]
                for name, (seconds, flops) in results.items():
                    rate = flops / seconds / 1e9
                    table.add_row(
                        arch,
                        str(batch),
                        name,
                        f"{seconds:.3f}",
                        f"{1000 * seconds / batch:.1f}",
                        f"{baseline / seconds:.2f}x",
                        f"{seconds / floor:.2f}",
                        f"{rate:.1f}",
                        f"{100 * rate / peak:.0f}%",
                    )
                table.add_section()
    console.print(table)


if __name__ == "__main__":
    main()
