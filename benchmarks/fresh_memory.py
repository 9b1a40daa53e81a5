"""How long a large tensor takes to fill, by how long ago the memory it lands on was freed.

A freed tensor of 2 MiB and more goes back to the kernel (``munmap``); the next one faults its
pages in again. On bare metal that costs the zeroing of each page. In a virtual machine whose
balloon device reports free memory to its host (``allocator.free_page_reporting``), the host
takes pages back once they have been free for a while (Linux reports after about two seconds),
and faulting them in again goes through the host. Each round frees a tensor, waits, then times
``torch.ones`` of the same size, for each pause in turn (the order reversed every other round);
ratios are against the shortest pause, same run. ``TWDEPLOY_REUSE_MEMORY=1`` keeps freed memory
in the process (``allocator.reuse_freed_memory``): compare a run with it.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/fresh_memory.py --mib 256 --pauses 0 1 3 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from twdeploy.runtime import allocator


def fill_ms(mib: int) -> float:
    """Milliseconds to make (and fill) a float32 tensor of ``mib`` MiB, which is then freed."""
    start = time.perf_counter()
    tensor = torch.ones(mib * 2**18)
    elapsed = time.perf_counter() - start
    del tensor
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="tensor size in MiB")
    parser.add_argument("--pauses", nargs="+", type=float, default=[0.0, 1.0, 3.0], help="seconds from free to fill")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    allocator.configure()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    console.print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, tensor pages: {allocator.describe()}"
    )
    pauses = sorted(args.pauses)
    times: dict[float, list[float]] = {pause: [] for pause in pauses}
    fill_ms(args.mib)  # the process's first touch of this much memory
    for rnd in range(args.rounds):
        for pause in pauses if rnd % 2 == 0 else pauses[::-1]:
            fill_ms(args.mib)  # freed just now, then left for `pause` seconds
            time.sleep(pause)
            times[pause].append(fill_ms(args.mib))
    table = Table(title=f"fill a {args.mib} MiB tensor after the memory was freed, median of {args.rounds} rounds")
    for col in ("freed this long ago", "ms", "min ms", "max ms", "ratio", "MiB/s"):
        table.add_column(col, justify="right")
    base = statistics.median(times[pauses[0]])
    for pause, runs in times.items():
        median = statistics.median(runs)
        table.add_row(
            f"{pause:g} s",
            f"{median:.0f}",
            f"{min(runs):.0f}",
            f"{max(runs):.0f}",
            f"{median / base:.1f}",
            f"{args.mib / median * 1000:.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
