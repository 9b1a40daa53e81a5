"""Relevance decoder cost on the CPU: one pass over all classes vs a class-by-class loop.

Prints, per architecture and batch size: forward only; all classes in one decoder pass; the
reference-style loop that recomputes the forward (pre-activations, batch-norm outputs,
residual sums) for every class (the baseline, NCHW as the reference runs); background + top-k.
The forward and the one pass run with NCHW and with channels-last images (the header says which
the torch backend uses at this size, ``twdeploy.runtime.layout``). Ratios are against the loop
measured in the same run, and against the floor ``(1 + K) x forward`` (the faster layout's
forward, same run); GFLOP/s against a large matmul measured in the same run.

``--memory`` instead runs one inference pass per configuration (architecture, batch, all
classes or top-k), each in its own child process, and reports its peak RSS (Linux ``VmHWM``):
of the whole process, and over the RSS once the model is built (the peak is reset there), with
the goals "batch-4 peak <= 1.2 x 4 x batch-1 peak" and "vgg16 batch-4 peak <= 2.5 GB" checked.

``--pages`` instead times the one pass (all classes) with 4 KiB pages and with huge pages
(``THP_MEM_ALLOC_ENABLE`` 0 / 1, see ``twdeploy.runtime.allocator``), each run in a child
process of its own, the two alternating within each of ``--rounds`` rounds; with the page
faults per pass and the child's peak RSS after its first and its last pass. ``--reuse`` does the
same with freed memory returned to the system or reused (``TWDEPLOY_REUSE_MEMORY`` 0 / 1);
``--reuse-max-memory`` gives the reuse runs a decoder budget of their own.

``--budgets`` instead times the one pass (all classes) at each decoder budget, the budgets
alternating within each of ``--rounds`` rounds (their order reversed every other round), with
the time ratio against the first budget and the classes per decoder chunk each budget gives.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --archs resnet50 vgg16 --batches 1 4
    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --memory --size 256 --threads 1
    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --budgets 2GiB 512MiB --rounds 3 --threads 1
    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --pages --archs resnet50 vgg16 --rounds 3
    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --reuse --archs resnet50 vgg16 --rounds 3
    OMP_WAIT_POLICY=ACTIVE python benchmarks/relevance.py --reuse --reuse-max-memory 512MiB --batches 4 --rounds 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from twdeploy import Segmenter
from twdeploy.model import fold_batchnorm
from twdeploy.model.segmenter import DEFAULT_MAX_MEMORY, chunk_for_budget, parse_memory
from twdeploy.runtime import allocator, layout
from twdeploy.runtime.layout import preferred_layout

GOAL_BATCH_FACTOR = 1.2
GOAL_VGG16_PEAK_GB = 2.5


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


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory, whatever ``twdeploy.runtime.layout`` would choose for its size."""
    return x.contiguous(memory_format=torch.channels_last)


def variants(
    arch: str, classes: int, topk: int, chunk: int | None, max_memory: int
) -> dict[str, Callable[[torch.Tensor], object]]:
    """The measured computations, each a function of the input batch."""
    unfolded = Segmenter(arch, num_classes=classes, class_chunk=chunk, max_memory=max_memory)
    top = Segmenter(arch, num_classes=classes, topk=topk, class_chunk=chunk, max_memory=max_memory)
    top.load_state_dict(unfolded.state_dict())
    full, top = fold_batchnorm(unfolded), fold_batchnorm(top)  # as export and segment run them

    def loop(x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for c in range(classes):
            logits, saved = full.encode(x)  # the reference recomputes everything per class
            maps.append(full.decode(saved, full.start_relevance(logits)[0][:, c : c + 1]))
        return maps

    return {
        "forward only, NCHW": lambda x: full.encoder(x),
        "forward only, channels-last": lambda x: full.encoder(channels_last(x)),
        f"loop over {classes} classes, NCHW (baseline)": loop,
        f"one pass, {classes} classes, NCHW": full,
        f"one pass, {classes} classes, channels-last": lambda x: full(channels_last(x)),
        f"one pass, background + top-{topk}, NCHW": top,
        f"one pass, background + top-{topk}, channels-last": lambda x: top(channels_last(x)),
    }


def memory_status() -> dict[str, float]:
    """This process's ``VmRSS`` and ``VmHWM`` (peak RSS since the last reset) in MiB, from ``/proc/self/status``."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", text)[1]) / 1024 for key in ("VmRSS", "VmHWM")}


def memory_child(args: argparse.Namespace) -> None:
    """Build one configuration, run one inference pass and print its memory figures (MiB) as JSON."""
    arch, batch, selection = args.child.split(",")
    topk = None if selection == "all" else args.topk
    seg = Segmenter(arch, num_classes=args.classes, topk=topk, class_chunk=args.class_chunk, max_memory=args.max_memory)
    model = fold_batchnorm(seg)  # as export and segment run it
    del seg
    gc.collect()
    x = torch.rand(int(batch), 3, args.size, args.size)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS: building the model is not counted
    loaded = memory_status()["VmRSS"]
    with torch.no_grad():
        model(preferred_layout(x))
    print(json.dumps({"loaded": loaded, "peak": memory_status()["VmHWM"]}))


def memory_table(args: argparse.Namespace, console: Console) -> None:
    """Peak RSS per configuration, each run in a child process of its own, and the goals checked."""
    table = Table(title=f"inference peak RSS (MiB), {args.size} px, {args.classes} classes, one pass, BN folded")
    columns = ("arch", "heatmaps", "batch", "model loaded", "peak", "peak - loaded", "peak ratio", "increase ratio")
    for col in columns:
        table.add_column(col, justify="left" if col in ("arch", "heatmaps") else "right")
    peaks: dict[tuple[str, str, int], dict[str, float]] = {}
    for arch in args.archs:
        for selection in ("all", "topk"):
            label = f"all {args.classes}" if selection == "all" else f"background + top-{args.topk}"
            for batch in args.batches:
                cmd = [sys.executable, __file__, *sys.argv[1:], "--child", f"{arch},{batch},{selection}"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                row = peaks[arch, selection, batch] = json.loads(out)
                one = peaks.get((arch, selection, 1))
                ratios = ["", ""]
                if one and batch > 1:
                    increase = (row["peak"] - row["loaded"]) / (batch * (one["peak"] - one["loaded"]))
                    ratios = [f"{row['peak'] / (batch * one['peak']):.2f}", f"{increase:.2f}"]
                cells = (row["loaded"], row["peak"], row["peak"] - row["loaded"])
                table.add_row(arch, label, str(batch), *(f"{v:.0f}" for v in cells), *ratios)
            table.add_section()
    console.print(table)
    console.print(
        "peak ratio: peak / (batch x the batch-1 peak); increase ratio: the same for peak - loaded, "
        "the memory the pass itself adds"
    )
    for (arch, selection, batch), row in peaks.items():
        one = peaks.get((arch, selection, 1))
        if batch != 4 or one is None:
            continue
        for what, factor in (
            ("peak", row["peak"] / (4 * one["peak"])),
            ("increase", (row["peak"] - row["loaded"]) / (4 * (one["peak"] - one["loaded"]))),
        ):
            console.print(
                f"{arch}, {selection}: batch-4 {what} = {factor:.2f} x (4 x batch-1 {what}) "
                f"({'met' if factor <= GOAL_BATCH_FACTOR else 'NOT met'}: goal <= {GOAL_BATCH_FACTOR})"
            )
        if arch == "vgg16":
            gb = row["peak"] * 2**20 / 1e9
            console.print(
                f"{arch}, {selection}: batch-4 peak {gb:.2f} GB "
                f"({'met' if gb <= GOAL_VGG16_PEAK_GB else 'NOT met'}: goal <= {GOAL_VGG16_PEAK_GB} GB)"
            )


def pages_child(args: argparse.Namespace) -> None:
    """Time the one pass (all classes) in this process's allocator setting; print seconds, faults and peaks as JSON.

    The peak RSS after the warm-up pass and after the last pass: freed memory kept in the heap can
    grow it from pass to pass. Where it is kept, each pass ends by handing it back, as the torch
    backend does (``allocator.release_freed_memory``).
    """
    arch, batch = args.pages_child.split(",")
    model = fold_batchnorm(Segmenter(arch, num_classes=args.classes, max_memory=args.max_memory))
    x = preferred_layout(torch.rand(int(batch), 3, args.size, args.size))
    times, faults = [], []
    with torch.no_grad():
        model(x)  # warm-up
        allocator.release_freed_memory()
        first_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for _ in range(args.repeats):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            model(x)
            allocator.release_freed_memory()  # as the torch backend does after each batch
            times.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "s": statistics.median(times),
        "faults": statistics.median(faults),
        "first peak": first_peak,
        "peak": peak,
    }
    print(json.dumps(summary))


PAGE_SETTINGS = {"4 KiB pages": {allocator.VARIABLE: "0"}, "huge pages": {allocator.VARIABLE: "1"}}
REUSED = "memory reused"
REUSE_SETTINGS = {"memory returned": {allocator.REUSE_VARIABLE: "0"}, REUSED: {allocator.REUSE_VARIABLE: "1"}}


def allocator_table(args: argparse.Namespace, console: Console, settings: dict[str, dict[str, str]]) -> None:
    """One pass in each allocator setting (environment variables), each in child processes, alternating per round."""
    table = Table(title=f"one pass, all {args.classes} classes, {args.size} px, median of {args.rounds} rounds")
    columns = ("arch", "batch", "allocator", "budget", "s/batch", "time ratio", "min s", "max s", "page faults/pass")
    for col in (*columns, "peak MiB, pass 1 -> last"):
        table.add_column(col, justify="left" if col in ("arch", "allocator") else "right")
    budgets = {name: args.max_memory for name in settings}
    if args.reuse_max_memory is not None:
        budgets[REUSED] = args.reuse_max_memory
    for arch in args.archs:
        for batch in args.batches:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
            for rnd in range(args.rounds):
                for name in list(settings) if rnd % 2 == 0 else list(settings)[::-1]:
                    child = ["--pages-child", f"{arch},{batch}", "--max-memory", str(budgets[name])]
                    cmd = [sys.executable, __file__, *sys.argv[1:], *child]
                    env = {**os.environ, **settings[name]}
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                    runs[name].append(json.loads(out.strip().splitlines()[-1]))
            first = statistics.median(r["s"] for r in runs[next(iter(settings))])
            for name, rows in runs.items():
                seconds = [r["s"] for r in rows]
                table.add_row(
                    arch,
                    str(batch),
                    name,
                    f"{budgets[name] / 2**20:.0f} MiB",
                    f"{statistics.median(seconds):.2f}",
                    f"{statistics.median(seconds) / first:.3f}",
                    f"{min(seconds):.2f}",
                    f"{max(seconds):.2f}",
                    f"{statistics.median(r['faults'] for r in rows):.0f}",
                    f"{max(r['first peak'] for r in rows):.0f} -> {max(r['peak'] for r in rows):.0f}",
                )
            table.add_section()
    console.print(table)


def budget_table(args: argparse.Namespace, console: Console) -> None:
    """One-pass time (all classes, BN folded) per decoder budget, the budgets alternating within each round."""
    table = Table(title=f"one pass, all {args.classes} classes, {args.size} px, median of {args.rounds} rounds")
    for col in ("arch", "batch", "budget", "classes per chunk", "s/batch", "time ratio", "min s", "max s"):
        table.add_column(col, justify="left" if col in ("arch", "budget") else "right")
    torch.manual_seed(0)
    with torch.no_grad():
        for arch in args.archs:
            model = fold_batchnorm(Segmenter(arch, num_classes=args.classes))
            for batch in args.batches:
                x = preferred_layout(torch.rand(batch, 3, args.size, args.size))
                saved = model.encode(x)[1]
                times: dict[int, list[float]] = {budget: [] for budget in args.budgets}
                for rnd in range(-1, args.rounds):  # round -1 is the warm-up
                    for budget in args.budgets if rnd % 2 == 0 else args.budgets[::-1]:
                        model.max_memory = budget
                        start = time.perf_counter()
                        model(x)
                        if rnd >= 0:
                            times[budget].append(time.perf_counter() - start)
                first = statistics.median(times[args.budgets[0]])
                for budget, runs in times.items():
                    table.add_row(
                        arch,
                        str(batch),
                        f"{budget / 2**20:.0f} MiB",
                        str(chunk_for_budget(saved, args.classes, budget)),
                        f"{statistics.median(runs):.2f}",
                        f"{statistics.median(runs) / first:.3f}",
                        f"{min(runs):.2f}",
                        f"{max(runs):.2f}",
                    )
                table.add_section()
    console.print(table)


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
    parser.add_argument(
        "--max-memory", type=parse_memory, default=DEFAULT_MAX_MEMORY, help="decoder budget, e.g. 512MiB (default 1GiB)"
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS per configuration instead of timings")
    parser.add_argument(
        "--budgets", nargs="+", type=parse_memory, help="time the one pass at these decoder budgets instead"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --budgets")
    allocators = parser.add_mutually_exclusive_group()
    allocators.add_argument(
        "--pages", action="store_true", help="time the one pass with 4 KiB pages vs huge pages instead"
    )
    allocators.add_argument(
        "--reuse", action="store_true", help="time the one pass with freed memory returned vs reused"
    )
    parser.add_argument(
        "--reuse-max-memory",
        type=parse_memory,
        help="with --reuse: the decoder budget of the reuse runs (default --max-memory)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pages-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reuse_max_memory is not None and not args.reuse:
        parser.error("--reuse-max-memory applies to --reuse runs only")
    allocator.configure()  # as the CLI does (THP_MEM_ALLOC_ENABLE, TWDEPLOY_REUSE_MEMORY)
    torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args)
        return
    if args.pages_child:
        pages_child(args)
        return
    console = Console(width=150)
    console.print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, input {args.size}x{args.size}, "
        f"decoder budget {args.max_memory / 2**30:.2f} GiB, tensor pages: {allocator.describe()}, "
        f"{layout.describe(args.size, args.size)}"
    )
    if args.memory:
        memory_table(args, console)
        return
    if args.budgets:
        budget_table(args, console)
        return
    if args.pages or args.reuse:
        allocator_table(args, console, PAGE_SETTINGS if args.pages else REUSE_SETTINGS)
        return
    peak = matmul_gflops(args.repeats)
    console.print(f"reference: 2048^3 float32 matmul at {peak:.1f} GFLOP/s")
    table = Table(title="relevance decoder, CPU (median of runs)")
    columns = ("arch", "batch", "variant", "s/batch", "ms/img", "speed-up vs loop", "x floor", "GFLOP/s", "% of matmul")
    for col in columns:
        table.add_column(col, justify="left" if col in ("arch", "variant") else "right")
    torch.manual_seed(0)
    with torch.no_grad():
        for arch in args.archs:
            runs = variants(arch, args.classes, args.topk, args.class_chunk, args.max_memory)
            for batch in args.batches:
                x = torch.rand(batch, 3, args.size, args.size)
                results = {}
                for name, fn in runs.items():
                    seconds = median_seconds(lambda fn=fn, x=x: fn(x), args.repeats)
                    results[name] = (seconds, count_flops(lambda fn=fn, x=x: fn(x)))
                baseline = next(s for n, (s, _) in results.items() if "baseline" in n)
                floor = (1 + args.classes) * min(s for n, (s, _) in results.items() if n.startswith("forward"))
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
