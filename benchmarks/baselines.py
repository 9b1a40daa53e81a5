"""The heatmap model against the paper's baselines (U-Net, multi-task U-Net) on one training config.

Trains each ``--model`` kind with the same data, encoder, budget and steps, then prints the
training loss (mean of the first and last tenth of the steps), validation mIoU, pixel accuracy
and tag F1, beside the mIoU of predicting background everywhere on the same images.

    python benchmarks/baselines.py                           # vgg_mini, 64 px, 60 steps, 20 pixel labels
    python benchmarks/baselines.py --steps 300 --arch resnet_mini
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from twdeploy.data import build_dataset
from twdeploy.training.config import TrainConfig
from twdeploy.training.metrics import ConfusionMatrix
from twdeploy.training.trainer import train

KINDS = ("heatmap", "unet", "mtunet")


def background_miou(data: str, size: int, images: int) -> float:
    """mIoU of an all-background prediction on the first ``images`` validation images."""
    val = build_dataset(data, "val", size, train=False)
    confusion = ConfusionMatrix(val.num_classes)
    for i in range(min(images, len(val))):
        mask = val[i]["mask"]
        confusion.update(torch.zeros_like(mask), mask)
    return confusion.miou()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:400")
    parser.add_argument("--arch", default="vgg_mini")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pixel-labels", type=int, default=20)
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--w-cls", type=float, default=1.0)
    args = parser.parse_args()
    tenth = max(1, args.steps // 10)
    print(f"{args.data}, {args.arch}, {args.size} px, batch {args.batch}, {args.steps} steps, "
          f"{args.pixel_labels} pixel labels, lr {args.lr:g}, w_cls {args.w_cls:g}, {args.val_images} val images")
    print(f"all-background val mIoU: {background_miou(args.data, args.size, args.val_images):.3f}")
    print(f"| model | loss, first {tenth} steps | loss, last {tenth} steps | val mIoU | pixel acc | tag F1 | s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for kind in KINDS:
            cfg = TrainConfig(
                data=args.data, model=kind, arch=args.arch, image_size=args.size, batch_size=args.batch,
                steps=args.steps, eval_every=args.steps, log_every=max(1, tenth), val_images=args.val_images,
                pixel_labels=args.pixel_labels, lr=args.lr, w_cls=args.w_cls, out=out, name=kind,
            )
            began = time.perf_counter()
            result = train(cfg, quiet=True)
            seconds = time.perf_counter() - began
            e = result.last_eval
            assert e is not None
            f1 = "-" if e.f1 != e.f1 else f"{e.f1:.3f}"
            first, last = statistics.mean(result.losses[:tenth]), statistics.mean(result.losses[-tenth:])
            numbers = [f"{v:.3f}" for v in (first, last, e.miou, e.pixel_accuracy)]
            row = [kind, *numbers, f1, f"{seconds:.0f}"]
            print(f"| {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
