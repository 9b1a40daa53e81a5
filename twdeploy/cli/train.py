"""``twdeploy train``: train a heatmap segmenter from image tags plus a few pixel masks."""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from twdeploy.cli.options import dataclass_parameters, given_on_command_line, read_config_file, typed_fields
from twdeploy.training.config import DEFAULT_STEPS, FIELD_HELP, NONE_ON_COMMAND_LINE, NOT_FLAGS, TrainConfig
from twdeploy.training.distributed import is_main_process, launch_on_gpus
from twdeploy.training.trainer import resume as resume_run
from twdeploy.training.trainer import train as train_run

HELP = f"""Train a classifier whose LRP heatmaps are its segmentation (tags for all images, masks for a few).

Without --steps or --epochs a run takes {DEFAULT_STEPS} steps. The run folder runs/NAME holds
config.json, metrics.jsonl, curves.png and checkpoints/{{best,last}}.pt. Every training option
is a field of TrainConfig; --config FILE (.json or .yaml, e.g. a run's config.json) sets any of
them, and options given on the command line win over the file.

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
  twdeploy train --config base.yaml --lr 1e-4      # a config file, one value overridden
  twdeploy train --gpus 4 --batch 16               # 4 GPUs (torchrun), global batch 64
"""

console = Console()
COMMAND_OPTIONS = [
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(help="JSON or YAML file of TrainConfig fields; command-line options override it."),
        ],
    ),
    inspect.Parameter(
        "resume",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Path | None, typer.Option(help="Continue this run folder (other options ignored).")],
    ),
    inspect.Parameter(
        "gpus",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            int | None, typer.Option(help="Data-parallel on N GPUs of this machine (launches torchrun for you).")
        ],
    ),
]


def training_options(cls: type[TrainConfig] = TrainConfig) -> list[inspect.Parameter]:
    """``twdeploy train``'s parameters: one option per ``cls`` field, then --config, --resume and --gpus."""
    fields = dataclass_parameters(cls, FIELD_HELP, NOT_FLAGS, NONE_ON_COMMAND_LINE, "Training options")
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    return [ctx, *fields, *COMMAND_OPTIONS]


def build_config(
    ctx: typer.Context, values: dict[str, Any], config: Path | None, cls: type[TrainConfig] = TrainConfig
) -> TrainConfig:
    """The file's fields (or the defaults), then every option given on the command line on top."""
    given = given_on_command_line(ctx, values)
    for name, none in NONE_ON_COMMAND_LINE.items():
        if given.get(name) == none:
            given[name] = None
    if config is None:
        return dataclasses.replace(cls(), **given)
    from_file = typed_fields(cls, read_config_file(config), f"--config {config}")
    return dataclasses.replace(cls.from_dict(from_file), **given)


def main(ctx: typer.Context, **options: Any) -> None:
    """Train (see HELP); the options are generated from TrainConfig by :func:`training_options`."""
    config, resume, gpus = (options.pop(name) for name in ("config", "resume", "gpus"))
    if gpus is not None:
        code = launch_on_gpus(gpus, sys.argv[1:])
        if code:
            raise typer.Exit(code)
        return
    result = resume_run(resume) if resume is not None else train_run(build_config(ctx, options, config))
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


main.__signature__ = inspect.Signature(training_options())  # type: ignore[attr-defined]
main.__doc__ = HELP
