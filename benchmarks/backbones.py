"""Backbones against each other on the CPU: classifier forward and segmenter forward (top-1).

Each architecture is timed in turn inside every round, so load from other processes hits all
of them alike; ratios are against the first architecture measured in the same run.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/backbones.py --archs resnet18 efficientnet_lite0 --size 224
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from twdeploy import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "efficientnet_lite0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, args.size, args.size)
    nets = {arch: Segmenter(arch, num_classes=21, topk=1).eval() for arch in args.archs}
    runs = {"classifier": lambda s: s.encoder(x), "segmenter (top-1)": lambda s: s(x)}
    times: dict[tuple[str, str], list[float]] = {(a, k): [] for a in nets for k in runs}
    with torch.no_grad():
        for seg in nets.values():
            for run in runs.values():
                run(seg)
        for _ in range(args.rounds):
            for arch, seg in nets.items():
                for kind, run in runs.items():
                    start = time.perf_counter()
                    run(seg)
                    times[arch, kind].append(time.perf_counter() - start)
    table = Table(title=f"{args.size} px, batch {args.batch}, {args.threads} thread(s), median of {args.rounds}")
    for column in ("arch", *(f"{k} ms" for k in runs), *(f"{k} ratio" for k in runs)):
        table.add_column(column)
    base = args.archs[0]
    for arch in nets:
        ms = [statistics.median(times[arch, k]) * 1e3 for k in runs]
        ratios = [statistics.median(times[arch, k]) / statistics.median(times[base, k]) for k in runs]
        table.add_row(arch, *(f"{m:.1f}" for m in ms), *(f"{r:.2f}" for r in ratios))
    Console().print(table)


if __name__ == "__main__":
    main()
