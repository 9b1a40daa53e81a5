"""Can the heatmap model overfit N masked scenes as a U-Net does? Train on them only, score on them.

Issue 8, item 3. Every method trains on the same N pixel-labelled built-in scenes and nothing
else: the heatmap model with no tag loss (``--w-cls 0``: the tag-only images drop out, so every
batch slot holds a masked scene, as with ``--pixel-share 1``) and the U-Net on the same encoder.
Same steps, batch, seed and augmentation (the trainer's) for every method; each method at its
own best learning rate from the same sweep, chosen on what is measured: mIoU on those same N
scenes, un-augmented, from ``checkpoints/last.pt`` (batch norms folded, as ``twdeploy eval``
runs it). The final pixel loss is the last logged training window of the run's ``metrics.jsonl``
(the heatmap model's loss is on heatmaps x H*W, the U-Net's on its score maps). Validation mIoU
(first ``--eval-images`` val scenes) is shown for reference.

Training reuses ``benchmarks/accuracy.py``'s runs (one child process, one thread, one run at a
time; a finished run keeps its ``result.json``); scores go to ``OUT/results.json``, so a rerun of
the same command only prints the tables.

    PYTHONPATH=. python benchmarks/overfit.py --out runs/overfit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from accuracy import METHODS, Job, run_all
from torch.utils.data import Subset

from twdeploy.model.io import load_model
from twdeploy.runtime.device import resolve_device
from twdeploy.training.config import TrainConfig
from twdeploy.training.data import build_run_data, eval_loader
from twdeploy.training.evaluate import eval_dataset, evaluate
from twdeploy.training.runlog import RunLog

# this script's method -> the benchmarks/accuracy.py method it trains (both on masks only)
OVERFIT_METHODS = {"heatmap": "heatmap-masks", "unet": "unet"}


def run_folder(args: argparse.Namespace, arch: str) -> Path:
    """Where one architecture's runs live: every setting that is not in a job's name is in this name."""
    return Path(args.out) / f"{arch}-{args.size}px-steps{args.steps}-batch{args.batch}"


def arch_args(args: argparse.Namespace, arch: str) -> argparse.Namespace:
    """The settings ``accuracy.job_config`` / ``accuracy.run_all`` read, for one encoder trained from scratch."""
    return argparse.Namespace(
        data=args.data,
        arch=arch,
        scratch_arch=arch,
        size=args.size,
        batch=args.batch,
        steps=args.steps,
        eval_images=args.eval_images,
        device=args.device,
        out=str(run_folder(args, arch)),
        jobs=1,
    )


def jobs_of(args: argparse.Namespace) -> list[tuple[str, str, Job]]:
    """``(arch, method, job)`` for every architecture, method and learning rate."""
    return [
        (arch, method, Job(OVERFIT_METHODS[method], "scratch", str(args.images), args.seed, lr))
        for arch in args.archs
        for method in args.methods
        for lr in args.lrs
    ]


def key_of(args: argparse.Namespace, arch: str, job: Job) -> str:
    """A run's key in ``results.json``."""
    return f"{run_folder(args, arch).name}/{job.name}"


def train_set_scores(run_dir: Path) -> dict[str, Any]:
    """mIoU and pixel accuracy of ``last.pt`` on the run's own pixel-labelled training scenes, un-augmented."""
    cfg = TrainConfig.load(run_dir / "config.json")
    indices = build_run_data(cfg).pixel_indices.tolist()
    model, card = load_model(run_dir / "checkpoints" / "last.pt")
    scenes = Subset(eval_dataset(card, run_dir, cfg.data, "train", None), indices)
    device = resolve_device(cfg.device)
    e = evaluate(model.to(device), eval_loader(scenes, 16), list(card.class_names), device, cfg.amp)
    train = [r for r in RunLog(run_dir).records() if r["kind"] == "train" and "seg" in r]
    return {
        "miou": e.miou,
        "pixel_accuracy": e.pixel_accuracy,
        "iou": e.iou,
        "images": e.images,
        "indices": indices,
        "pixel_loss_first": train[0]["seg"],
        "pixel_loss_final": train[-1]["seg"],
    }


def measure(args: argparse.Namespace, results_file: Path) -> dict[str, dict[str, Any]]:
    """Train and score every job not yet in ``results_file``; all requested results, keyed by :func:`key_of`."""
    results: dict[str, dict[str, Any]] = json.loads(results_file.read_text()) if results_file.exists() else {}
    todo = [(arch, method, job) for arch, method, job in jobs_of(args) if key_of(args, arch, job) not in results]
    print(f"runs: {len(jobs_of(args))}, to train or score: {len(todo)}")
    for arch in args.archs:
        mine = [(method, job) for a, method, job in todo if a == arch]
        if not mine:
            continue
        sub = arch_args(args, arch)
        trained = run_all([job for _, job in mine], sub)
        for method, job in mine:
            if job.name not in trained:
                continue  # failed: run_all said why
            run = {**trained[job.name], "arch": arch, "overfit_method": method}
            run["train"] = train_set_scores(Path(sub.out) / job.name)
            results[key_of(args, arch, job)] = run
            results_file.write_text(json.dumps(results, indent=1))
            t = run["train"]
            print(f"  {arch} {method} lr {job.lr:g}: train-set mIoU {t['miou']:.3f}, loss {t['pixel_loss_final']:.3f}")
    keys = [key_of(args, arch, job) for arch, _, job in jobs_of(args)]
    return {k: results[k] for k in keys if k in results}


def tables(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Markdown: each (arch, method) at its best lr (train-set mIoU), then every run of the sweep."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results.values():
        groups.setdefault((r["arch"], r["overfit_method"]), []).append(r)
    order = sorted(groups, key=lambda k: (args.archs.index(k[0]), args.methods.index(k[1])))

    def row(r: dict[str, Any]) -> str:
        t = r["train"]
        return (
            f"| {r['arch']} | {r['overfit_method']} | {r['lr']:g} | {t['miou']:.3f} | {t['pixel_accuracy']:.3f} | "
            f"{t['pixel_loss_final']:.3f} | {r['val']['miou']:.3f} | {r['seconds']:.0f} |"
        )

    head = [
        "| arch | method | lr | train-set mIoU | train-set pixel acc | final pixel loss | val mIoU | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best = [max(groups[k], key=lambda r: (r["train"]["miou"], -r["train"]["pixel_loss_final"])) for k in order]
    every = [r for k in order for r in sorted(groups[k], key=lambda r: r["lr"])]
    return [
        f"Best learning rate per method (by train-set mIoU on the {args.images} training scenes):",
        "",
        *head,
        *map(row, best),
        "",
        "Every run of the sweep:",
        "",
        *head,
        *map(row, every),
    ]


def settings(args: argparse.Namespace) -> str:
    """The command line, thread settings and training budget the tables come from."""
    env = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"))
    return (
        f"`python benchmarks/overfit.py {' '.join(sys.argv[1:])}`\n\n"
        f"torch {torch.__version__}; {env}; torch threads: 1 per training run (accuracy.run_job), "
        f"{torch.get_num_threads()} in this process (scoring); one run at a time. Data `{args.data}` at "
        f"{args.size} px, {args.images} pixel-labelled training scenes (seed {args.seed}'s class-balanced draw), "
        f"{args.steps} steps of batch {args.batch} for every method; learning rates "
        f"{', '.join(f'{lr:g}' for lr in args.lrs)}; methods: "
        + "; ".join(f"{m} = {METHODS[OVERFIT_METHODS[m]][0]}" for m in args.methods)
        + "."
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--images", type=int, default=20, help="pixel-labelled training scenes (the only training data)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--methods", default="heatmap,unet", help=f"from {', '.join(OVERFIT_METHODS)}")
    p.add_argument("--archs", default="vgg_mini,vgg_mini_bn", help="encoders, each trained from scratch")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="the learning-rate sweep, the same for every method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-images", type=int, default=100, help="val (and test) scenes scored for reference")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/overfit", help="runs folder; results.json there is reused")
    args = p.parse_args(argv)
    args.methods = args.methods.split(",")
    args.archs = args.archs.split(",")
    args.lrs = [float(v) for v in args.lrs.split(",")]
    unknown = [m for m in args.methods if m not in OVERFIT_METHODS]
    if unknown:
        p.error(f"unknown method {unknown}; choose from {', '.join(OVERFIT_METHODS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(settings(args), "\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = measure(args, out / "results.json")
    if not results:
        raise SystemExit("no run finished; see the errors above")
    total = sum(r["seconds"] for r in results.values())
    print("\n" + "\n".join(tables(results, args)))
    print(
        f"\nTraining time of these runs: {total / 60:.1f} min "
        f"(this invocation: {(time.perf_counter() - started) / 60:.1f} min; finished runs are reused)."
    )


if __name__ == "__main__":
    main()
