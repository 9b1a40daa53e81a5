"""The training loop: mixed batches, tag + heatmap (or U-Net score map) losses, AdamW, evaluation, checkpoints, resume.

A run lives in ``runs/<name>/``: ``config.json``, ``metrics.jsonl``, ``curves.png`` and
``checkpoints/{best,last}.pt``. ``last.pt`` carries optimiser, scheduler, step and RNG state,
so :func:`resume` continues to the same total step count (bit-identical on CPU). Ctrl-C and
SIGTERM (``KeyboardInterrupt``, also when raised from a callback) write ``last.pt`` before they
propagate, as :class:`~twdeploy.signals.Interrupted` saying where to resume; ``save_every``
writes it between evaluations too. A run folder without a checkpoint resumes from step 0.
A ``classify`` stage steps the encoder on the tag loss alone; a ``--recipe paper`` run chains
a classify stage and the segment stage (:mod:`twdeploy.training.stages`). Under ``torchrun`` the
same code trains data-parallel (:mod:`twdeploy.training.distributed`); rank 0 alone writes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from twdeploy import atomic
from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.io import read_checkpoint, save_checkpoint
from twdeploy.model.segmenter import Segmenter
from twdeploy.paths import output_dir
from twdeploy.runtime import allocator
from twdeploy.signals import Interrupted, deferred_signals, stop_on_signals
from twdeploy.training.chunking import Rows, loss_rows, training_heatmaps
from twdeploy.training.config import TrainConfig
from twdeploy.training.data import build_run_data, eval_loader, train_loader
from twdeploy.training.device import autocast, resolve_device
from twdeploy.training.distributed import setup
from twdeploy.training.evaluate import EvalResult, evaluate
from twdeploy.training.init import initialise, input_normalization, with_start_normalization
from twdeploy.training.losses import classification_loss, total_loss
from twdeploy.training.runlog import RunLog
from twdeploy.training.schedule import build_scheduler
from twdeploy.training.stages import classify_stage_config, classify_stage_dir, segment_stage_started
from twdeploy.training.tying import decoder_aliases

StepCallback = Callable[[int, dict[str, float]], None]
"""Called after every optimiser step with the step count and that step's losses."""


@dataclass
class TrainResult:
    """What a (possibly resumed) training call did."""

    run_dir: Path
    step: int
    best_miou: float
    last_eval: EvalResult | None
    losses: list[float] = field(default_factory=list)


def default_run_dir(cfg: TrainConfig) -> Path:
    """``<out>/<name>``, the name defaulting to ``<arch>-<data kind>-<timestamp>``."""
    name = cfg.name or f"{cfg.arch}-{cfg.data.partition(':')[0]}-{datetime.now():%Y%m%d-%H%M%S}"
    return Path(cfg.out) / name


def train(cfg: TrainConfig, callbacks: Sequence[StepCallback] = (), quiet: bool = False) -> TrainResult:
    """Start a new run in :func:`default_run_dir`; an existing run folder is a one-line error."""
    cfg = with_start_normalization(cfg.validate())
    ranks = setup(cfg.device)
    cfg = replace(cfg, world_size=ranks.world)
    output_dir(cfg.out, "--out")
    run_dir = ranks.same_on_all(default_run_dir(cfg))
    if ranks.same_on_all((run_dir / "config.json").exists()):
        raise TwdeployError(f"{run_dir}: run folder exists; pick another --name or continue it with --resume {run_dir}")
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
    ranks.barrier()
    if cfg.recipe is not None:
        return _recipe_segment_stage(cfg, run_dir, callbacks, quiet)
    trainer = Trainer(cfg, run_dir, quiet)
    initialise(trainer.model, cfg, trainer.card.class_names)
    return trainer.fit(callbacks)


def resume(run_dir: str | Path, callbacks: Sequence[StepCallback] = (), quiet: bool = False) -> TrainResult:
    """Continue a run from its ``checkpoints/last.pt`` (or from step 0 if it has none yet) to the total step count."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise TwdeployError(f"{run_dir}: no config.json, so not a run folder; start a run with twdeploy train")
    cfg = TrainConfig.load(run_dir / "config.json").validate()
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file() and cfg.recipe is not None:  # stopped in (or right after) the classify stage
        return _recipe_segment_stage(cfg, run_dir, callbacks, quiet)
    trainer = Trainer(cfg, run_dir, quiet)
    if trainer.ranks.is_main:
        atomic.clean_stale_temps(last.parent, older_than_s=0)  # this process owns the run folder now
    if last.is_file():
        trainer.load_state(read_checkpoint(last).get("training") or {})
    elif trainer.ranks.is_main:
        trainer.log.truncate_after(0)  # died before its first checkpoint: start over
    return trainer.fit(callbacks)


def _recipe_segment_stage(
    cfg: TrainConfig, run_dir: Path, callbacks: Sequence[StepCallback], quiet: bool
) -> TrainResult:
    """Finish (or run) the recipe's classify stage, then train the segment stage from its weights."""
    if segment_stage_started(run_dir):
        return resume(run_dir, callbacks, quiet)
    stage_dir = classify_stage_dir(run_dir)
    if (stage_dir / "checkpoints" / "last.pt").is_file():
        resume(stage_dir, callbacks, quiet)
    else:
        stage_cfg = classify_stage_config(cfg, run_dir)
        if setup(cfg.device).is_main:
            stage_dir.mkdir(parents=True, exist_ok=True)
            stage_cfg.save(stage_dir / "config.json")
        stage = Trainer(stage_cfg, stage_dir, quiet)
        initialise(stage.model, stage_cfg, stage.card.class_names)
        stage.fit(callbacks)
    return Trainer(cfg, run_dir, quiet, start_from=stage_dir / "checkpoints" / "last.pt").fit(callbacks)


class Trainer:
    """One run: data, model, optimiser and the loop; use :func:`train` / :func:`resume`."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, quiet: bool = False, start_from: Path | None = None) -> None:
        self.ranks = setup(cfg.device)
        self.cfg, self.run_dir, self.quiet = cfg, run_dir, quiet or not self.ranks.is_main
        self.device = self.ranks.place(resolve_device(cfg.device))
        self.ranks.per_rank_batch(cfg.global_batch, str(run_dir))
        torch.manual_seed(cfg.seed)
        self.data = build_run_data(cfg)
        self.card = ModelCard(
            cfg.arch,
            tuple(self.data.class_names),
            (cfg.image_size, cfg.image_size),
            normalization=input_normalization(cfg.arch, cfg.normalization).to_dict(),
            eps=cfg.eps,
            model=cfg.model,
            input_rule=cfg.input_rule,
            gamma=cfg.gamma,
        )
        self.model = self.card.build(cfg.class_chunk)
        if start_from is not None:  # the weights of an earlier stage (same card)
            self.model.load_state_dict(read_checkpoint(start_from)["model"])
        self.model.to(self.device)
        if isinstance(self.model, Segmenter):
            self.model.bn_rule = cfg.bn_rule
        self.train_mode()
        self.aliases = decoder_aliases(self.model, cfg.tie) if cfg.model == "heatmap" else {}
        params = [*self.model.parameters(), *self.aliases.values()]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        unused = cfg.stage == "classify" or cfg.model != "heatmap"  # no decoder; a U-Net skips parts of its encoder
        self.forward = self.ranks.wrap(self._training_forward, self.model, list(self.aliases.values()), unused)
        self.stop_agreed = False
        self.total_steps = cfg.total_steps(len(self.data.train))
        self.scheduler = build_scheduler(self.optimizer, self.total_steps) if cfg.cosine else None
        self.step, self.best_miou = 0, -math.inf
        self.log = RunLog(run_dir)
        self.val_loader = eval_loader(self.ranks.shard(self.data.val), cfg.batch_size, cfg.workers)

    def train_mode(self) -> None:
        """Training mode; with frozen batch norms (``cfg.frozen_bn()``) those stay in eval mode."""
        self.model.train()
        if self.cfg.frozen_bn():
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything besides the weights that resuming needs."""
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "best_miou": self.best_miou,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state(self, training: dict[str, Any]) -> None:
        """Restore weights (already in ``self.run_dir``'s last.pt), optimiser, scheduler, step and RNG."""
        if "optimizer" not in training:
            raise TwdeployError(f"{self.run_dir}: last.pt holds no training state; it cannot be resumed")
        payload = read_checkpoint(self.run_dir / "checkpoints" / "last.pt")
        self.model.load_state_dict(payload["model"])  # copies in place: the aliases keep sharing storage
        self.optimizer.load_state_dict(training["optimizer"])
        if self.scheduler is not None and training["scheduler"] is not None:
            self.scheduler.load_state_dict(training["scheduler"])
        self.step, self.best_miou = int(training["step"]), float(training["best_miou"])
        torch.set_rng_state(training["rng_torch"])
        if training["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(training["rng_cuda"])
        if self.ranks.is_main:
            self.log.truncate_after(self.step)

    def save(self, name: str, with_state: bool) -> None:
        """Write ``checkpoints/<name>`` atomically (rank 0 only)."""
        if not self.ranks.is_main:
            return
        extra = self.state() if with_state else {"step": self.step, "best_miou": self.best_miou}
        extra["stage"] = self.cfg.stage
        save_checkpoint(self.run_dir / "checkpoints" / name, self.model, self.card, extra)

    # -- loop -------------------------------------------------------------------------------------
    def score_maps(self, images: torch.Tensor, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, class score maps of the images rows)``: tied LRP heatmaps, or a U-Net's own maps."""
        if self.cfg.model != "heatmap":
            logits, maps = self.model(images)
            return logits, maps[rows]
        logits, saved = self.model.encode(images)
        cfg = self.cfg
        maps = training_heatmaps(self.model, logits, saved, self.aliases, cfg.class_chunk, cfg.heatmap_grad, rows)
        return logits, maps

    def _training_forward(self, images: torch.Tensor, rows: Rows | None = None) -> Any:
        """Logits (classify stage), or ``(logits, score maps of rows)``: what DDP wraps."""
        if self.cfg.stage == "classify":
            return self.model.encoder(images)
        return self.score_maps(images, slice(None) if rows is None else rows)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on a batch; returns the loss and its unweighted parts."""
        dev, cfg = self.device, self.cfg
        images = batch["image"].to(dev, non_blocking=True)
        if cfg.stage == "classify":
            with autocast(dev, cfg.amp):
                logits = self.forward(images)
            cls = classification_loss(logits, batch["tags"].to(dev))
            return self._step(cfg.w_cls * cls, {"cls": float(cls.detach())})
        has_mask = batch["has_mask"].to(dev)
        rows = loss_rows(has_mask)  # the pixel loss reads only the masked images' maps
        with autocast(dev, cfg.amp):
            logits, heatmaps = self.forward(images, rows)
        loss, parts = total_loss(
            logits,
            batch["tags"].to(dev),
            heatmaps,
            batch["mask"].to(dev)[rows],
            has_mask[rows],
            w_cls=cfg.tag_weight,
            w_seg=cfg.w_seg,
            boundary=cfg.boundary,  # type: ignore[arg-type]
            heatmap_scale=cfg.resolved_heatmap_scale(),
            pixel_count=self.ranks.global_count if self.ranks.enabled else None,
        )
        return self._step(loss, {"cls": float(parts["cls"]), "seg": float(parts["seg"])})

    def _step(self, loss: torch.Tensor, parts: dict[str, float]) -> dict[str, float]:
        """Backward, optional gradient clipping, optimiser and schedule step; the loss and ``parts``.

        Under torchrun the values are the means over ranks (the single-process values), and
        ``stop_agreed`` says whether any rank was asked to stop.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        values, self.stop_agreed = self.ranks.agree({"loss": float(loss.detach()), **parts}, self.device)
        value = values["loss"]
        if not math.isfinite(value):
            raise TwdeployError(
                f"{self.run_dir}: loss became {value} at step {self.step + 1} (training diverged); start a new "
                f"run with a lower --lr (now {self.cfg.lr:g}) or a higher --eps (now {self.cfg.eps:g})"
            )
        if self.cfg.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.cfg.clip_grad)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return values

    def evaluate(self) -> EvalResult:
        """Validation metrics; updates best.pt and last.pt."""
        sum_counts = (lambda c: self.ranks.sum_counts(c, self.device)) if self.ranks.enabled else None
        result = evaluate(self.model, self.val_loader, self.data.class_names, self.device, self.cfg.amp, sum_counts)
        self.train_mode()
        record = {"kind": "eval", "stage": self.cfg.stage, "step": self.step, **result.summary(), "iou": result.iou}
        if result.miou > self.best_miou:
            self.best_miou = result.miou
            self.save("best.pt", with_state=False)
        self.save("last.pt", with_state=True)
        if self.ranks.is_main:
            self.log.append(record)
            self.log.plot()
        return result

    def fit(self, callbacks: Sequence[StepCallback] = ()) -> TrainResult:
        """Train from the current step to ``total_steps``; Ctrl-C or SIGTERM saves last.pt and raises Interrupted."""
        cfg = self.cfg
        result = TrainResult(self.run_dir, self.step, self.best_miou, None)
        self.ranks.decorrelate(cfg.seed, self.step)
        batches = iter(train_loader(self.data, cfg, self.step, self.ranks.share))
        window: list[dict[str, float]] = []
        seen, busy = 0, 0.0
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
        )
        with stop_on_signals(), self.ranks.stop_requests(), Progress(*columns, disable=self.quiet) as bar:
            task = bar.add_task("train", total=self.total_steps, completed=self.step, info="")
            miou = "-"
            if not self.quiet and (self.ranks.enabled or cfg.world_size > 1):
                bar.console.print(
                    f"data-parallel: global batch {cfg.global_batch} = {cfg.global_batch // self.ranks.world} "
                    f"per process x {self.ranks.world} processes"
                )
            try:
                while self.step < self.total_steps:
                    start = time.perf_counter()
                    batch = next(batches)
                    with deferred_signals():  # a stop lands between steps: last.pt is never half a step
                        losses = self.train_step(batch)
                        self.step += 1
                    allocator.release_freed_memory()
                    if self.stop_agreed:  # every rank stops after the same step
                        raise Interrupted(self.ranks.stop_signal or signal.SIGTERM)
                    busy += time.perf_counter() - start
                    seen += len(batch["image"]) * self.ranks.world
                    result.losses.append(losses["loss"])
                    window.append(losses)
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        self._log_train(window, seen / busy)
                        window = []
                    if self.step % cfg.eval_every == 0 or self.step == self.total_steps:
                        result.last_eval = self.evaluate()
                        miou = f"{result.last_eval.miou:.3f}"
                    elif cfg.save_every and self.step % cfg.save_every == 0:
                        self._save_last()
                    info = f"loss {losses['loss']:.3f}  mIoU {miou}  {seen / busy:.1f} img/s"
                    bar.update(task, completed=self.step, info=info)
                    for callback in callbacks:
                        callback(self.step, losses)
            except KeyboardInterrupt as exc:
                self._save_last()
                self.ranks.barrier()  # no rank exits (and has torchrun stop the rest) before last.pt is written
                signum = exc.signum if isinstance(exc, Interrupted) else Interrupted().signum
                raise Interrupted(
                    signum,
                    f"{self.run_dir}: stopped at step {self.step} of {self.total_steps}, checkpoints/last.pt "
                    f"saved; continue with twdeploy train --resume {self.run_dir}",
                ) from exc
        if self.step == result.step:  # nothing left to do (a finished run resumed)
            self.save("last.pt", with_state=True)
        self.ranks.barrier()  # the checkpoints are on disk before any rank reads them (next stage)
        result.step, result.best_miou = self.step, self.best_miou
        return result

    def _save_last(self) -> None:
        """``last.pt`` with the full training state; a signal meanwhile waits until it is on disk."""
        with deferred_signals():
            self.save("last.pt", with_state=True)

    def _log_train(self, window: list[dict[str, float]], images_per_s: float) -> None:
        mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"kind": "train", "stage": self.cfg.stage, "step": self.step, **mean, "lr": lr, "img_s": images_per_s}
        if self.ranks.is_main:
            self.log.append(record | {"global_batch": self.cfg.global_batch, "processes": self.ranks.world})
