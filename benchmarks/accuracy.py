"""Does the claim hold? The heatmap model against the paper's baselines: same encoder, data and budget.

Methods: the heatmap model with tags + masks (the paper's recipe: a tags-only classifier
stage, then the heatmap stage started from it), the heatmap model with masks only, a U-Net
and a multi-task U-Net on the same encoder, and the tags-only classifier (the tag-F1
reference). Every method gets the same optimiser steps and batch size (a masks-only method
fills every batch slot with a masked image, so it sees more masks per step than the mixed
ones: the budget never favours the heatmap model) and its own best learning rate from the
same sweep, chosen on the **validation** split at the smallest pixel budget, seed 0. All
reported figures are measured on the **test** split, which nothing was tuned on.

Each run trains in a child process with one thread (``--jobs`` at a time) under ``--out``;
finished runs keep a ``result.json`` there, so an interrupted benchmark resumes where it stopped.

    python benchmarks/accuracy.py                                   # CPU settings, writes docs/accuracy.md
    python benchmarks/accuracy.py --size 256 --steps 3000 --jobs 1 --device cuda --write docs/accuracy-gpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

# name -> (description, TrainConfig overrides, the score that picks its learning rate)
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "heatmap": ("heatmap model, tags + masks (paper recipe)", {"model": "heatmap", "recipe": "paper"}, "miou"),
    "heatmap-full": (
        "heatmap model, tags + masks (paper recipe), the reference's full gradient",
        {"model": "heatmap", "recipe": "paper", "heatmap_grad": "full"},
        "miou",
    ),
    "heatmap-gamma": (
        "heatmap model, tags + masks (paper recipe), LRP-gamma 0.25",
        {"model": "heatmap", "recipe": "paper", "gamma": 0.25, "bn_rule": "canonical"},
        "miou",
    ),
    "heatmap-masks": ("heatmap model, masks only", {"model": "heatmap", "w_cls": 0.0}, "miou"),
    "unet": ("U-Net, masks only", {"model": "unet"}, "miou"),
    "mtunet": ("MT-U-Net, masks + tags", {"model": "mtunet"}, "miou"),
    "classifier": ("tags-only classifier", {"model": "heatmap", "stage": "classify"}, "f1"),
}
USES_MASKS = {"heatmap", "heatmap-full", "heatmap-gamma", "heatmap-masks", "unet", "mtunet"}
HEATMAP_RECIPES = ("heatmap", "heatmap-gamma")
"""The methods the goals are checked for."""
STARTS = ("scratch", "imagenet")


@dataclass(frozen=True)
class Job:
    """One training run: a method, an encoder start, a pixel budget, a seed and a learning rate."""

    method: str
    start: str
    budget: str  # an integer or "all"
    seed: int
    lr: float

    @property
    def name(self) -> str:
        return f"{self.method}-{self.start}-px{self.budget}-s{self.seed}-lr{self.lr:g}"


def job_config(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields of a job."""
    _, overrides, _ = METHODS[job.method]
    return {
        "data": args.data,
        "arch": args.arch if job.start == "imagenet" else args.scratch_arch,
        "image_size": args.size,
        "batch_size": args.batch,
        "steps": args.steps,
        "eval_every": args.steps,
        "val_images": args.eval_images,
        "device": args.device,
        "pixel_labels": None if job.budget == "all" else int(job.budget),
        **({"weights": "imagenet"} if job.start == "imagenet" else {}),
        **overrides,
        **({"classify_steps": args.steps // 3, "steps": args.steps - args.steps // 3} if "recipe" in overrides else {}),
        "lr": job.lr,
        "seed": job.seed,
        "out": args.out,
        "name": job.name,
    }


def run_job(job: Job, config: dict[str, Any], eval_images: int | None) -> dict[str, Any]:
    """Train one job (or reuse its finished run) and score it on the val and test splits."""
    torch.set_num_threads(1)
    from twdeploy.training.config import TrainConfig
    from twdeploy.training.evaluate import evaluate_checkpoint
    from twdeploy.training.trainer import resume, train

    run_dir = Path(config["out"]) / job.name
    done = run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    start = time.perf_counter()
    if (run_dir / "checkpoints" / "last.pt").exists():
        resume(run_dir, quiet=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run that died before its first checkpoint: start again
        train(TrainConfig(**config), quiet=True)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"job": job.name, "seconds": seconds, **asdict(job)}
    for split in ("val", "test"):
        e = evaluate_checkpoint(run_dir, config["data"], split, device=config["device"], max_images=eval_images)
        result[split] = {"miou": e.miou, "iou": e.iou, "f1": e.f1, "pixel_accuracy": e.pixel_accuracy}
        result["class_names"] = e.class_names
    done.write_text(json.dumps(result, indent=1))
    return result


def run_all(jobs: Iterable[Job], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run jobs ``args.jobs`` at a time; results keyed by job name. A failed job is reported, not fatal."""
    jobs = list(dict.fromkeys(jobs))
    results: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, j, job_config(j, args), args.eval_images): j for j in jobs}
        for future, job in futures.items():
            try:
                results[job.name] = future.result()
            except Exception as exc:  # one failed configuration must not lose the others' results
                print(f"  FAILED {job.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
                continue
            r = results[job.name]
            print(f"  {job.name}: val mIoU {r['val']['miou']:.3f} F1 {r['val']['f1']:.3f}  ({r['seconds']:.0f} s)")
    return results


def sweep(args: argparse.Namespace) -> dict[tuple[str, str], float]:
    """Each (method, start)'s best learning rate on the validation split (smallest budget, seed 0)."""
    smallest = args.budgets[0]
    jobs = [
        Job(m, s, smallest if m in USES_MASKS else "0", 0, lr)
        for m in args.methods
        for s in args.starts
        for lr in args.lrs
    ]
    print(f"learning-rate sweep: {len(jobs)} runs")
    results = run_all(jobs, args)
    best: dict[tuple[str, str], float] = {}
    for m in args.methods:
        metric = METHODS[m][2]
        for s in args.starts:
            scored = [
                (results[j.name]["val"][metric], j.lr)
                for j in jobs
                if (j.method, j.start) == (m, s)
                if j.name in results
            ]
            if scored:
                best[(m, s)] = max(scored)[1]
    return best


def final_jobs(args: argparse.Namespace, best: dict[tuple[str, str], float]) -> list[Job]:
    """Every (method, start, budget) at its best lr; extra seeds at the smallest budget."""
    jobs = []
    for (m, s), lr in best.items():
        budgets = args.budgets if m in USES_MASKS else ["0"]
        for b in budgets:
            seeds = args.seeds if b == args.budgets[0] else args.seeds[:1]
            jobs += [Job(m, s, b, seed, lr) for seed in seeds]
    return jobs


def _mean(values: list[float]) -> str:
    if any(v != v for v in values):  # nan: the method has no such output (a U-Net's tags)
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def grouped(results: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Results grouped by (method, start, budget) over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results.values():
        groups.setdefault((r["method"], r["start"], r["budget"]), []).append(r)
    return groups


def tables(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Markdown: the summary table, per-class IoU and the goal checks, all on the test split."""
    groups = grouped(results)
    budgets = [*args.budgets, "0"]
    keys = sorted(groups, key=lambda k: (args.starts.index(k[1]), budgets.index(k[2]), args.methods.index(k[0])))
    names = next(iter(results.values()))["class_names"]
    lines = [
        "| start | pixel labels | method | lr | seeds | test mIoU | test tag F1 | pixel acc | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        rs = groups[key]
        m, s, b = key
        lines.append(
            f"| {s} | {'-' if b == '0' else b} | {METHODS[m][0]} | {rs[0]['lr']:g} | {len(rs)} | "
            f"{_mean([r['test']['miou'] for r in rs])} | {_mean([r['test']['f1'] for r in rs])} | "
            f"{_mean([r['test']['pixel_accuracy'] for r in rs])} | {statistics.mean(r['seconds'] for r in rs):.0f} |"
        )
    lines += [
        "",
        "Per-class test IoU (mean over seeds):",
        "",
        "| start | pixel labels | method | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for key in keys:
        m, s, b = key
        if m not in USES_MASKS:
            continue
        rs = groups[key]
        per_class = [statistics.mean(r["test"]["iou"][c] for r in rs) for c in range(len(names))]
        lines.append(f"| {s} | {b} | {m} | " + " | ".join(f"{v:.2f}" for v in per_class) + " |")
    lines += ["", *goal_checks(groups, args)]
    return lines


def goal_checks(groups: dict[tuple[str, str, str], list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    """The issue's goals at the smallest budget, met or not, from the test-split means."""

    def mean(method: str, start: str, budget: str, metric: str) -> float | None:
        rs = groups.get((method, start, budget))
        return statistics.mean(r["test"][metric] for r in rs) if rs else None

    lines = ["Goal checks (test split, smallest pixel budget, mean over seeds):", ""]
    b = args.budgets[0]
    for s in args.starts:
        f1_cls = mean("classifier", s, "0", "f1")
        for method in HEATMAP_RECIPES:
            hm = mean(method, s, b, "miou")
            for base, need in (("unet", 0.10), ("mtunet", 0.05)):
                other = mean(base, s, b, "miou")
                if hm is not None and other is not None:
                    gap = hm - other
                    verdict = "met" if gap >= need else "NOT met"
                    lines.append(
                        f"- {s}, {b} masks: {method} - {base} = {gap * 100:+.1f} mIoU points "
                        f"(goal >= {need * 100:.0f}): {verdict}"
                    )
            f1_hm = mean(method, s, b, "f1")
            if f1_hm is not None and f1_cls is not None:
                verdict = "met" if f1_hm >= f1_cls - 0.01 else "NOT met"
                lines.append(
                    f"- {s}: {method} tag F1 {f1_hm:.3f} vs tags-only classifier {f1_cls:.3f} "
                    f"(goal: within 1 point): {verdict}"
                )
        if f1_cls is not None:
            lines.append(
                f"- {s}: tags-only classifier F1 {f1_cls:.3f} (goal >= 0.9): {'met' if f1_cls >= 0.9 else 'NOT met'}"
            )
    return lines


def settings(args: argparse.Namespace) -> str:
    """The command line and machine settings the tables come from."""
    argv = " ".join(sys.argv[1:])
    return (
        f"`OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} python benchmarks/accuracy.py {argv}`\n\n"
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.jobs} run(s) at a time with 1 thread each; data `{args.data}` at {args.size} px, encoder "
        f"`{args.arch}` (ImageNet start) or `{args.scratch_arch}` (scratch), {args.steps} steps of batch "
        f"{args.batch} for every method; learning rates "
        f"{', '.join(f'{lr:g}' for lr in args.lrs)} swept per method on the val split "
        f"(pixel budget {args.budgets[0]}, seed 0); seeds {', '.join(map(str, args.seeds))} at that budget."
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--arch", default="efficientnet_lite0", help="every method's encoder, ImageNet start")
    p.add_argument(
        "--scratch-arch",
        default="vgg_mini_bn",
        help="every method's encoder, random start (a fresh efficientnet_lite0's float32 relevance is noise)",
    )
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--budgets", default="20,100,all", help="pixel-label budgets, smallest first")
    p.add_argument("--starts", default="scratch,imagenet", help=f"from {', '.join(STARTS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"from {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0,1", help="seeds at the smallest budget (the first for the others)")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="the learning-rate sweep, the same for every method")
    p.add_argument("--eval-images", type=int, default=None, help="score on the first N val/test images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=None, help="runs folder (default runs/accuracy-ARCH-SIZEpx-STEPS)")
    p.add_argument("--write", default="docs/accuracy.md", help="markdown report ('' to skip)")
    p.add_argument("--append", action="store_true", help="add the report to --write instead of replacing it")
    args = p.parse_args(argv)
    args.out = args.out or f"runs/accuracy-{args.size}px-{args.steps}steps-batch{args.batch}"
    args.budgets = args.budgets.split(",")
    args.starts = args.starts.split(",")
    args.methods = args.methods.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.lrs = [float(v) for v in args.lrs.split(",")]
    for name, allowed, given in (("start", STARTS, args.starts), ("method", METHODS, args.methods)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            p.error(f"unknown {name} {unknown}; choose from {', '.join(allowed)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    print(settings(args), "\n")
    best = sweep(args)
    print("best learning rates:", {f"{m}/{s}": lr for (m, s), lr in best.items()})
    print(f"final runs: {len(final_jobs(args, best))} (sweep runs reused)")
    results = run_all(final_jobs(args, best), args)
    if not results:
        raise SystemExit("no run finished; see the errors above")
    report = [
        settings(args),
        "",
        *tables(results, args),
        "",
        f"Training time of these runs, one thread each: {sum(r['seconds'] for r in results.values()) / 60:.0f} min "
        f"(this invocation: {(time.perf_counter() - started) / 60:.0f} min; finished runs are reused).",
    ]
    print("\n" + "\n".join(report))
    if args.write:
        header = [
            "# Accuracy: the heatmap model against its baselines",
            "",
            "Written by `benchmarks/accuracy.py`; do not edit by hand.",
            "",
        ]
        target = Path(args.write)
        if args.append and target.exists():
            target.write_text(target.read_text() + "\n" + "\n".join(report) + "\n")
        else:
            target.write_text("\n".join(header + report) + "\n")
        print(f"\nwrote {args.write}")


if __name__ == "__main__":
    main()
