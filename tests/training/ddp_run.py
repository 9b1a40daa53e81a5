"""torchrun target of test_distributed: ``twdeploy ARGS`` with ``vgg_mini_nodrop`` registered, each rank's leaves saved.

Each rank draws its own dropout masks, so only a dropout-free net can match one process exactly:
``vgg_mini_nodrop`` is ``vgg_mini`` with dropout 0.
After training, every rank writes ``rank<R>.pt`` (its trained leaves and AdamW state) into the run.
"""

from collections.abc import Sequence

import torch

from twdeploy.cli.app import main
from twdeploy.model.backbones import VGG
from twdeploy.model.registry import register_backbone
from twdeploy.training.trainer import StepCallback, Trainer, TrainResult

DROPOUT_FREE = "vgg_mini_nodrop"


def register_dropout_free() -> None:
    """Register ``vgg_mini_nodrop``: ``vgg_mini``'s layers with dropout p = 0."""
    register_backbone(
        DROPOUT_FREE,
        lambda k, c: VGG([16, "M", 32, "M", 64, "M", 64, "M"], k, c, hidden=128, pool=2, dropout=0.0),
        image_size=64,
        replace=True,
    )


def _fit_and_save_leaves(self: Trainer, callbacks: Sequence[StepCallback] = ()) -> TrainResult:
    result = _fit(self, callbacks)
    leaves = self.optimizer.param_groups[0]["params"]
    state = [{k: v for k, v in self.optimizer.state[p].items() if k != "step"} for p in leaves]
    torch.save({"leaves": [p.detach() for p in leaves], "state": state}, self.run_dir / f"rank{self.ranks.rank}.pt")
    return result


_fit = Trainer.fit

if __name__ == "__main__":
    register_dropout_free()
    Trainer.fit = _fit_and_save_leaves
    main()
