"""Data-parallel training under ``torchrun``: process group, per-rank batches, reductions, rank-0 I/O.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them everything here is a
single-process no-op (with them, even one process trains through DDP).
Every rank draws the same step-keyed global batch and keeps the items at
positions ``rank, rank + world, ...``, so the pixel-labelled / tag-only mix stays within each
rank's share and a run resumes with any rank count dividing its global batch. Gradients are
averaged by ``torch.nn.parallel.DistributedDataParallel``; evaluation counts are summed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as run
from torch.utils.data import Dataset, Subset

from twdeploy.errors import TwdeployError
from twdeploy.signals import handling_stops
from twdeploy.training.device import resolve_device

T = TypeVar("T")


@dataclass
class Ranks:
    """This process's place in the job; ``launched`` is False for plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False
    stop_signal: int | None = field(default=None, compare=False)

    @property
    def enabled(self) -> bool:
        """True under torchrun."""
        return self.launched

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA run (one GPU per process), else ``device``."""
        if device.type != "cuda" or not self.enabled:
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def decorrelate(self, seed: int, step: int) -> None:
        """Ranks other than 0 draw dropout masks from a stream of their own (keyed by seed, rank and step)."""
        if self.rank > 0:
            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank, step]).generate_state(1)[0]))

    def barrier(self) -> None:
        """Wait for every rank (e.g. until rank 0 has written a checkpoint the others read)."""
        if self.enabled:
            dist.barrier()

    def same_on_all(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (e.g. a run folder named after the time)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, keys: Sequence[T]) -> list[T]:
        """This rank's items of a global batch: positions ``rank, rank + world, ...``."""
        return list(keys[self.rank :: self.world])

    def shard(self, dataset: Dataset) -> Dataset:
        """This rank's items of an evaluation set: ``rank, rank + world, ...``."""
        return dataset if not self.enabled else Subset(dataset, range(self.rank, len(dataset), self.world))

    def per_rank_batch(self, global_batch: int, where: str) -> int:
        """``global_batch / world``; a one-line error when the batch does not split evenly."""
        if global_batch % self.world:
            raise TwdeployError(
                f"{where}: the global batch of {global_batch} images does not split over {self.world} processes; "
                f"use a process count that divides {global_batch}"
            )
        return global_batch // self.world

    def sum_counts(self, counts: np.ndarray, device: torch.device) -> np.ndarray:
        """Integer counts (a confusion matrix, F1 tallies) summed over all ranks."""
        if not self.enabled:
            return counts
        total = torch.as_tensor(counts, dtype=torch.int64, device=device)
        dist.all_reduce(total)
        return total.cpu().numpy().astype(counts.dtype)

    def global_count(self, count: torch.Tensor) -> torch.Tensor:
        """A per-rank count summed over ranks (at least 1), divided by the rank count (DDP averages gradients)."""
        if not self.enabled:
            return count.clamp(min=1)
        total = count.detach().to(torch.float32).clone()
        dist.all_reduce(total)
        return total.clamp(min=1) / self.world

    def agree(self, values: dict[str, float], device: torch.device) -> tuple[dict[str, float], bool]:
        """Step values averaged over ranks, and whether any rank has been asked to stop (one all-reduce)."""
        if not self.enabled:
            return values, False
        packed = torch.tensor([*values.values(), float(self.stop_signal is not None)], device=device)
        dist.all_reduce(packed)
        means = (packed[:-1] / self.world).tolist()
        return dict(zip(values, means, strict=True)), bool(packed[-1] > 0)

    @contextlib.contextmanager
    def stop_requests(self) -> Iterator[None]:
        """Under torchrun, SIGINT/SIGTERM only note a stop request, which :meth:`agree` shares at the next step."""
        if not self.enabled:
            yield
            return

        def note(signum: int, _frame: FrameType | None) -> None:
            self.stop_signal = signum

        with handling_stops(note):
            yield

    def wrap(
        self, forward: Callable[..., Any], model: nn.Module, extra: Sequence[nn.Parameter], unused: bool
    ) -> Callable:
        """``forward`` through ``DistributedDataParallel`` over ``model`` and ``extra`` leaves, or as it is.

        Every parameter's gradient is averaged and rank 0's buffers (BatchNorm running statistics)
        are broadcast at each step. ``unused``: some get no gradient (a classify stage has no decoder).
        """
        if not self.enabled:
            return forward
        return nn.parallel.DistributedDataParallel(_Forward(forward, model, extra), find_unused_parameters=unused)


class _Forward(nn.Module):
    """A training forward as a module owning every trained parameter, the tied-weight aliases included."""

    def __init__(self, forward: Callable[..., Any], model: nn.Module, extra: Sequence[nn.Parameter]) -> None:
        super().__init__()
        self.model = model
        self.extra = nn.ParameterList(extra)
        self.forward_fn = forward

    def forward(self, images: torch.Tensor, *args: Any) -> Any:
        return self.forward_fn(images, *args)


def is_main_process() -> bool:
    """False on the torchrun ranks other than 0 (which print nothing of their own)."""
    return os.environ.get("RANK", "0") == "0"


def setup(device_name: str) -> Ranks:
    """Join torchrun's process group once (NCCL for CUDA, gloo for CPU); single-process without torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    env = os.environ
    ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")), launched=True)
    if not dist.is_initialized():
        cuda = resolve_device(device_name).type == "cuda"
        if cuda and torch.cuda.device_count() <= ranks.local_rank:
            raise TwdeployError(
                f"local rank {ranks.local_rank}: only {torch.cuda.device_count()} GPUs visible; "
                "lower --nproc-per-node or use --device cpu"
            )
        dist.init_process_group("nccl" if cuda else "gloo")
    return ranks


def launch_on_gpus(gpus: int, argv: Sequence[str]) -> int:
    """Run ``twdeploy ARGV`` (without ``--gpus``) under torchrun on ``gpus`` local GPUs; the exit code."""
    if "WORLD_SIZE" in os.environ:
        raise TwdeployError("--gpus: this process already runs under torchrun; drop --gpus")
    visible = torch.cuda.device_count()
    if not visible:
        raise TwdeployError(
            f"--gpus {gpus}: no CUDA device is visible; on CPU run torchrun --nproc-per-node N -m twdeploy train "
            "--device cpu ..."
        )
    if not 1 <= gpus <= visible:
        raise TwdeployError(f"--gpus {gpus}: {visible} CUDA devices are visible; pass 1 to {visible}")
    try:
        run(["--standalone", f"--nproc-per-node={gpus}", "-m", "twdeploy", *without_gpus_option(argv)])
    except ChildFailedError as exc:  # each process has printed its own error or stop line
        return exc.get_first_failure()[1].exitcode
    return 0


def without_gpus_option(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--gpus N`` / ``--gpus=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out
