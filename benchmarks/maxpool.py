"""Max-pool relevance rule: the phase/broadcast scatter in ``rules.maxpool2d`` vs the one-hot grouped
ConvTranspose it replaced (kept as the test oracle in ``tests/model/maxpool_reference.py``).

Times the rule alone on the pools of ResNet (stem, 3x3/2, padding 1) and VGG16 (first 2x2/2), and
the whole segmenter (all classes, one pass, batch norms folded) of each architecture with either
rule. The two variants alternate inside every round, so load from other processes hits both alike.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=ACTIVE python benchmarks/maxpool.py --size 128 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tests.model.maxpool_reference import onehot_maxpool2d
from twdeploy import Segmenter
from twdeploy.model import fold_batchnorm, rules

RULES = {"one-hot ConvTranspose (before)": onehot_maxpool2d, "phases / broadcast (after)": rules.maxpool2d}


def rule_case(
    size: int, channels: int, kernel: int, stride: int, padding: int, classes: int, batch: int
) -> Callable[[Callable[..., torch.Tensor]], object]:
    """The rule alone on a pool input of ``size`` px, relevance ``Scaled`` as the decoder passes it."""
    a = torch.randn(batch, channels, size, size)
    y = F.max_pool2d(a, kernel, stride, padding)
    r = rules.Scaled(torch.randn(batch, classes, *y.shape[1:]), torch.rand_like(y))
    k, s, p = (kernel, kernel), (stride, stride), (padding, padding)
    return lambda rule: rule(a, y, r, k, s, p)


def model_case(arch: str, size: int, classes: int, batch: int) -> Callable[[Callable[..., torch.Tensor]], object]:
    """The segmenter's forward (all classes) with the max-pool rule swapped in."""
    model = fold_batchnorm(Segmenter(arch, num_classes=classes))
    x = torch.rand(batch, 3, size, size)

    def run(rule: Callable[..., torch.Tensor]) -> object:
        rules.maxpool2d, saved = rule, rules.maxpool2d
        try:
            return model(x)
        finally:
            rules.maxpool2d = saved

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="network input size (px)")
    parser.add_argument("--archs", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, k, s = args.batch, args.classes, args.size
    cases = {
        f"rule: resnet stem pool 64x{s // 2}x{s // 2}, 3x3/2": rule_case(s // 2, 64, 3, 2, 1, k, n),
        f"rule: vgg16 first pool 64x{s}x{s}, 2x2/2": rule_case(s, 64, 2, 2, 0, k, n),
        **{f"{arch}, all {k} classes, one pass": model_case(arch, s, k, n) for arch in args.archs},
    }
    print(
        f"{s} px, batch {n}, {k} classes, torch threads {torch.get_num_threads()}, "
        f"median of {args.rounds} alternating rounds (after one warm-up each)"
    )
    print(f"{'case':<48} " + " ".join(f"{name:>32}" for name in RULES) + f" {'after/before':>13}")
    with torch.no_grad():
        for label, case in cases.items():
            times: dict[str, list[float]] = {name: [] for name in RULES}
            for rule in RULES.values():
                case(rule)
            for _ in range(args.rounds):
                for name, rule in RULES.items():
                    start = time.perf_counter()
                    case(rule)
                    times[name].append(time.perf_counter() - start)
            medians = [statistics.median(times[name]) for name in RULES]
            cells = " ".join(f"{1000 * m:29.1f} ms" for m in medians)
            print(f"{label:<48} {cells} {medians[1] / medians[0]:12.2f}x")


if __name__ == "__main__":
    main()
