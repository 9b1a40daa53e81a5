"""``twdeploy train``: train a heatmap segmenter from image tags plus a few pixel masks."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from twdeploy.training.config import DEFAULT_STEPS, TrainConfig
from twdeploy.training.distributed import is_main_process, launch_on_gpus
from twdeploy.training.trainer import resume as resume_run
from twdeploy.training.trainer import train as train_run

HELP = f"""Train a classifier whose LRP heatmaps are its segmentation (tags for all images, masks for a few).

Without --steps or --epochs a run takes {DEFAULT_STEPS} steps. The run folder runs/NAME holds
config.json, metrics.jsonl, curves.png and checkpoints/{{best,last}}.pt.

\b
Examples:
  twdeploy train                                   # CPU demo on built-in synthetic scenes
  twdeploy train --data synthetic --arch vgg_mini --image-size 64 --steps 600
  twdeploy train --data voc:~/VOCdevkit --arch resnet50 --image-size 256 --pixel-labels 100 --lr 1e-5
  twdeploy train --recipe paper --classify-steps 500 --steps 1000   # tags-only classifier, then heatmaps
  twdeploy train --stage classify --steps 500      # the tags-only classifier stage alone
  twdeploy train --arch efficientnet_lite0 --weights imagenet --image-size 224 --lr 1e-4
  twdeploy train --w-cls 0 --name pixels-only      # baseline without the tag loss
  twdeploy train --model unet --name unet          # the paper's U-Net baseline on the same encoder
  twdeploy train --resume runs/NAME                # continue a stopped run
  twdeploy train --gpus 4 --batch-size 16          # 4 GPUs (torchrun), global batch 64
"""

console = Console()
_DEFAULTS = TrainConfig()


def main(
    data: Annotated[str, typer.Option(help="synthetic, synthetic:N, voc:PATH or folder:PATH.")] = _DEFAULTS.data,
    model: Annotated[
        str, typer.Option(help="heatmap (LRP decoder), or the baselines unet (masks only) and mtunet (+ tags).")
    ] = _DEFAULTS.model,
    arch: Annotated[
        str, typer.Option(help="Backbone, e.g. resnet_mini, vgg_mini, resnet50, vgg16, efficientnet_lite0.")
    ] = _DEFAULTS.arch,
    weights: Annotated[
        str | None,
        typer.Option(help="Start from ImageNet weights: imagenet (packaged ones) or a torchvision state dict FILE."),
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="Start from an earlier run folder or checkpoint (same --arch).")
    ] = None,
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = _DEFAULTS.image_size,
    pixel_labels: Annotated[int, typer.Option(help="Pixel-label budget (class-balanced draw); -1 = every mask.")] = 20,
    steps: Annotated[int | None, typer.Option(help=f"Optimiser steps (default {DEFAULT_STEPS}).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training set (if no --steps).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = _DEFAULTS.batch_size,
    lr: Annotated[
        float, typer.Option(help="AdamW learning rate (1e-5 fine-tunes a pretrained classifier).")
    ] = _DEFAULTS.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = _DEFAULTS.weight_decay,
    cosine: Annotated[bool, typer.Option(help="Warm-up + cosine learning-rate schedule.")] = _DEFAULTS.cosine,
    w_cls: Annotated[
        float, typer.Option(help="Weight of the tag (multi-label) loss; 0 = pixel labels only.")
    ] = _DEFAULTS.w_cls,
    w_seg: Annotated[float, typer.Option(help="Weight of the heatmap cross-entropy.")] = _DEFAULTS.w_seg,
    heatmap_scale: Annotated[
        float | None, typer.Option(help="Heatmap factor in the pixel loss (default H*W; 1 = reference).")
    ] = None,
    pixel_share: Annotated[
        float, typer.Option(help="Share of each batch drawn from the pixel-labelled images.")
    ] = _DEFAULTS.pixel_share,
    eps: Annotated[float, typer.Option(help="LRP stabiliser epsilon.")] = _DEFAULTS.eps,
    boundary: Annotated[
        str, typer.Option(help="Label 255: ignore, or background (the reference).")
    ] = _DEFAULTS.boundary,
    normalization: Annotated[
        str, typer.Option(help="Input scaling: unit ((x+1)/256) or meanstd (the backbone's pretrained mean/std).")
    ] = _DEFAULTS.normalization,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = _DEFAULTS.device,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA (ignored on CPU).")] = _DEFAULTS.amp,
    class_chunk: Annotated[int | None, typer.Option(help="Decode this many classes at a time (bounds memory).")] = None,
    tie: Annotated[str, typer.Option(help="Tied weights in AdamW: summed, or separate (reference).")] = _DEFAULTS.tie,
    stage: Annotated[
        str, typer.Option(help="classify (tags only, no decoder) or segment (tags + heatmaps).")
    ] = _DEFAULTS.stage,
    recipe: Annotated[
        str | None, typer.Option(help="paper: a classify stage, then the segment stage from its weights.")
    ] = None,
    classify_steps: Annotated[
        int, typer.Option(help="Steps of the recipe's classify stage (--steps counts the segment stage).")
    ] = _DEFAULTS.classify_steps,
    clip_grad: Annotated[float | None, typer.Option(help="Clip the global gradient norm to this.")] = None,
    bn_stats: Annotated[
        str, typer.Option(help="Batch norms train on: batch or running statistics; auto = running from pretrained.")
    ] = _DEFAULTS.bn_stats,
    bn_rule: Annotated[
        str, typer.Option(help="Decoder's batch-norm rule: separate (reference) or canonical (merged into the conv).")
    ] = _DEFAULTS.bn_rule,
    eval_every: Annotated[int, typer.Option(help="Evaluate and checkpoint every N steps.")] = _DEFAULTS.eval_every,
    save_every: Annotated[
        int, typer.Option(help="Also save checkpoints/last.pt every N steps between evaluations (0 = off).")
    ] = _DEFAULTS.save_every,
    log_every: Annotated[int, typer.Option(help="Log training losses every N steps.")] = _DEFAULTS.log_every,
    val_images: Annotated[int | None, typer.Option(help="Evaluate on the first N validation images only.")] = None,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = _DEFAULTS.workers,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, pixel budget and batches.")] = _DEFAULTS.seed,
    out: Annotated[Path, typer.Option(help="Parent folder of run folders.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run folder name (default ARCH-DATA-TIMESTAMP).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run folder (other options ignored).")] = None,
    gpus: Annotated[
        int | None, typer.Option(help="Data-parallel on N GPUs of this machine (launches torchrun for you).")
    ] = None,
) -> None:
    if gpus is not None:
        code = launch_on_gpus(gpus, sys.argv[1:])
        if code:
            raise typer.Exit(code)
        return
    if resume is not None:
        result = resume_run(resume)
    else:
        cfg = TrainConfig(
            data=data,
            model=model,
            arch=arch,
            weights=weights,
            init=init,
            image_size=image_size,
            pixel_labels=None if pixel_labels < 0 else pixel_labels,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            cosine=cosine,
            w_cls=w_cls,
            w_seg=w_seg,
            heatmap_scale=heatmap_scale,
            pixel_share=pixel_share,
            eps=eps,
            boundary=boundary,
            normalization=normalization,
            device=device,
            amp=amp,
            class_chunk=class_chunk,
            tie=tie,
            stage=stage,
            recipe=recipe,
            classify_steps=classify_steps,
            clip_grad=clip_grad,
            bn_stats=bn_stats,
            bn_rule=bn_rule,
            eval_every=eval_every,
            save_every=save_every,
            log_every=log_every,
            val_images=val_images,
            workers=workers,
            seed=seed,
            out=str(out),
            name=name,
        )
        result = train_run(cfg)
    if not is_main_process():
        return
    if result.last_eval is not None:
        e = result.last_eval
        f1 = "-" if math.isnan(e.f1) else f"{e.f1:.3f}"  # nan: a U-Net has no classifier
        console.print(
            f"step {result.step}: val mIoU {e.miou:.3f} (best {result.best_miou:.3f}), "
            f"pixel acc {e.pixel_accuracy:.3f}, tag F1 {f1}"
        )
    console.print(f"run folder: {result.run_dir}")
    console.print(f"next: twdeploy export {result.run_dir}")


main.__doc__ = HELP
