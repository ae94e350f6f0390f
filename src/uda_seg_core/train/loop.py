"""The training loop shared by `uda-seg train`, `uda-seg adapt` and every fine-tune.

Each job builds its networks, optimisers and a step function (`supervised.supervised_step`,
`adversarial.adversarial_step`, ...) and hands them over in a `Trainer`. `iterate` runs the
iterations themselves (one batch per domain, the step, the schedules, a check that the
losses are finite); `fit` adds what a run needs around them:

- the run directory (`run_dir.py`): the resolved `config.yaml`, `metrics.json` (its
  `history`: one entry per validation, with the mean of each step loss over the
  iterations since the previous one, `train_losses`, e.g. D's `d_acc_source`),
  TensorBoard scalars (`tb/`) and the checkpoints `last.pt` (every
  `train.checkpoint_every` iterations and at the end: weights, optimisers, schedules, grad
  scalers, RNG states, iteration) and `best.pt` (best target-val mIoU);
- validation on the target val split (model selection, never on test) and the final
  target-test evaluation of the best weights;
- timing: seconds per iteration and per epoch (the paper's training-time column);
- resume: `resume.restore` puts all of the above back, so a run killed at any moment loses at
  most one checkpoint interval;
- distributed training under `torchrun` (gloo on CPU, nccl on GPU): only rank 0 writes.

`launch` is the whole of `uda-seg train|adapt` as a function: config, processes, run
directory, `fit`.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from uda_seg_core.checkpoint import load_checkpoint, save_checkpoint
from uda_seg_core.config import Config, to_dict
from uda_seg_core.data import has_split
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.reporting import atomic_write_json
from uda_seg_core.runtime import (
    DistInfo,
    barrier,
    cleanup_distributed,
    configure_determinism,
    gather_rng_states,
    seed_everything,
    setup_distributed,
    to_device,
    unwrap,
)
from uda_seg_core.train.loaders import resolve_data, target_split
from uda_seg_core.train.optim import current_lr
from uda_seg_core.train.resume import restore, resumable_state
from uda_seg_core.train.run_dir import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS_FILE,
    RunRequest,
    load_run_config,
    prepare_run_dir,
)
from uda_seg_core.train.trainer import LoopState, Trainer, total_iterations

log = logging.getLogger(__name__)

PROGRESS_LOSSES = ("seg", "adv", "d")  # shown on the progress bar; every loss goes to TensorBoard


def iterate(trainer: Trainer, device: torch.device, start: int, end: int,
            channels_last: bool = False,
            on_epoch: Callable[[int, dict], None] | None = None,
            ) -> Iterator[tuple[int, dict[str, float], float]]:
    """Run iterations `start` .. `end` - 1: at each epoch boundary the trainer's epoch hooks
    (their scalars go to `on_epoch(iteration, scalars)`), then one batch per loader, the
    step and the schedules. Yields (iterations done, losses, seconds of the step)."""
    per_epoch = trainer.iterations_per_epoch
    for loader in trainer.loaders.values():
        loader.seek(start)
    for iteration in range(start, end):
        if iteration % per_epoch == 0:
            scalars: dict = {}
            for hook in trainer.epoch_hooks:
                scalars.update(hook(iteration // per_epoch + 1) or {})
            if on_epoch is not None:
                on_epoch(iteration, scalars)
        t0 = time.perf_counter()
        batches = {name: to_device(loader.next(), device, channels_last)
                   for name, loader in trainer.loaders.items()}
        losses = trainer.step(batches)
        for scheduler in trainer.schedulers.values():
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite loss at iteration {iteration + 1}: {losses}; "
                                     f"lower train.lr or disable train.amp")
        yield iteration + 1, losses, elapsed


# --------------------------------------------------------------------------- a run


def _format_duration(seconds: float) -> str:
    """mm:ss (or h:mm:ss), like the paper's training-time column."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _scalar_summary(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float))}


class Run:
    """One `fit`: the trainer, its run directory and the bookkeeping around the iterations
    (timing, epochs, validation, checkpoints, TensorBoard, metrics.json)."""

    def __init__(self, cfg: Config, trainer: Trainer, run_dir: Path, dist: DistInfo,
                 device: torch.device, state: LoopState, resume: bool):
        self.cfg, self.trainer, self.run_dir = cfg, trainer, run_dir
        self.dist, self.device, self.state = dist, device, state
        self.max_iters = total_iterations(cfg, trainer)
        self.per_epoch = trainer.iterations_per_epoch
        self.val_every = cfg.train.val_every or self.per_epoch
        self.val_set = target_split(cfg, cfg.data.val_split)
        self.writer = None
        if dist.is_main:
            from torch.utils.tensorboard import SummaryWriter  # optional: TensorBoard's writer

            self.writer = SummaryWriter(str(run_dir / "tb"),
                                        purge_step=state.iteration if resume else None)
        self.epoch_start: tuple[float, float] | None = None  # (wall clock, train seconds)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}{key}", value, step)

    def start_epoch(self, iteration: int, scalars: dict) -> None:
        self.scalars(scalars, iteration)
        self.epoch_start = (time.perf_counter(), self.state.train_seconds)

    def record(self, iteration: int, losses: dict, elapsed: float, timed: bool) -> dict:
        """Book one finished iteration; returns the learning rates (for the progress bar)."""
        state = self.state
        if timed:  # the first iteration after a (re)start pays for allocation
            state.train_seconds += elapsed
            state.timed_iterations += 1
        state.iteration = iteration
        for key, value in losses.items():
            state.interval_losses[key] = state.interval_losses.get(key, 0.0) + value
        state.interval_iterations += 1
        lrs = {f"lr/{name}": current_lr(opt) for name, opt in self.trainer.optimizers.items()}
        self.scalars({**{f"loss/{k}": v for k, v in losses.items()}, **lrs}, iteration)
        if iteration % self.per_epoch == 0 and self.epoch_start is not None:
            wall = time.perf_counter() - self.epoch_start[0]
            train_seconds = state.train_seconds - self.epoch_start[1]
            state.epochs.append({"epoch": iteration // self.per_epoch, "iteration": iteration,
                                 "train_seconds": round(train_seconds, 4),
                                 "wall_seconds": round(wall, 4)})
            self.scalars({"time/seconds_per_epoch": wall}, iteration)
        return lrs

    def validate(self) -> None:
        cfg, state, model = self.cfg, self.state, self.trainer.model
        cm = evaluate_model(unwrap(model), self.val_set, self.device, distributed=self.dist.enabled,
                            amp=cfg.train.amp, channels_last=cfg.train.channels_last)
        summary = cm.summary()
        epoch = round(state.iteration / self.per_epoch, 3)
        n = state.interval_iterations
        train_losses = {k: v / n for k, v in state.interval_losses.items()} if n else {}
        state.history.append({"iteration": state.iteration, "epoch": epoch, **summary,
                              "train_losses": train_losses, "train_losses_iterations": n})
        state.interval_losses, state.interval_iterations = {}, 0
        self.scalars(_scalar_summary(summary), state.iteration, "val/")
        miou = summary["miou"] if summary["miou"] is not None else -1.0  # None: no class present
        if miou > state.best_miou:
            state.best_miou, state.best_iteration = float(miou), state.iteration
            if self.dist.is_main:
                save_checkpoint(self.run_dir / CHECKPOINT_BEST, model, cfg,
                                iteration=state.iteration, val=_scalar_summary(summary))
        self.write_metrics()
        model.train()

    def checkpoint(self) -> None:
        rng = gather_rng_states(self.dist)
        if self.dist.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT_LAST, self.trainer.model, self.cfg,
                            **resumable_state(self.trainer, self.state, rng, self.max_iters))

    def metrics_document(self, test: dict | None) -> dict:
        state, per_epoch = self.state, self.per_epoch
        sec_per_it = None
        if state.timed_iterations:
            sec_per_it = state.train_seconds / state.timed_iterations
        best = next((h for h in state.history if h["iteration"] == state.best_iteration), None)
        return {
            "run": self.run_dir.name,
            "command": self.trainer.command,
            "iteration": state.iteration,
            "max_iters": self.max_iters,
            "iterations_per_epoch": per_epoch,
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "seconds_per_iteration": sec_per_it,
            "seconds_per_epoch": sec_per_it * per_epoch if sec_per_it else None,
            "training_time": _format_duration(sec_per_it * self.max_iters) if sec_per_it else None,
            "epochs": state.epochs,
            "history": state.history,
            "best": best,
            "test": test,
        }

    def write_metrics(self, test: dict | None = None) -> dict:
        doc = self.metrics_document(test)
        if self.dist.is_main:
            atomic_write_json(self.run_dir / METRICS_FILE, doc)
        return doc

    def close(self, test: dict | None = None) -> None:
        if test is not None:
            self.scalars(_scalar_summary(test), self.state.iteration, "test/")
        if self.writer is not None:
            self.writer.close()


def fit(cfg: Config, trainer: Trainer, run_dir: Path, dist: DistInfo, device: torch.device,
        resume: bool = False, stop_at: int | None = None) -> dict:
    """Train to `max_iters` (or stop early at `stop_at`, checkpointing there), validating on
    the target val split; then evaluate the best weights on the target test split.
    Returns the metrics document (also written to run_dir/metrics.json by rank 0)."""
    state = restore(trainer, run_dir / CHECKPOINT_LAST, cfg, dist,
                    device) if resume else LoopState()
    run = Run(cfg, trainer, run_dir, dist, device, state, resume)
    end = run.max_iters if stop_at is None else min(stop_at, run.max_iters)
    trainer.train_mode()
    bar = tqdm(total=end, initial=state.iteration, disable=not dist.is_main, dynamic_ncols=True,
               desc=run_dir.name, mininterval=1.0)
    steps = iterate(trainer, device, state.iteration, end, cfg.train.channels_last, run.start_epoch)
    for n, (iteration, losses, elapsed) in enumerate(steps):
        lrs = run.record(iteration, losses, elapsed, timed=n > 0)
        bar.update(1)
        bar.set_postfix({**{k: f"{v:.3g}" for k, v in losses.items() if k in PROGRESS_LOSSES},
                         **{k.split("/")[1] + "_lr": f"{v:.2e}" for k, v in lrs.items()}},
                        refresh=False)
        if iteration % run.val_every == 0 or iteration == run.max_iters:
            run.validate()
        if iteration % cfg.train.checkpoint_every == 0 or iteration == end:
            run.checkpoint()
    bar.close()
    if state.iteration < run.max_iters:  # stopped early on request: resumable from last.pt
        run.close()
        return run.write_metrics()
    test = final_test(cfg, trainer, run_dir, dist, device)
    run.close(test)
    return run.write_metrics(test)


def final_test(cfg: Config, trainer: Trainer, run_dir: Path, dist: DistInfo,
               device: torch.device) -> dict:
    """Target-test metrics of the weights selected on val (best.pt), never selected on test;
    a target without a test split reports that it was skipped."""
    d = cfg.data
    if not has_split(d.target_format, d.target_root, d.test_split):
        note = (f"no '{d.test_split}' split in {d.target_root}: selected and reported on "
                f"'{d.val_split}' only")
        return {"split": d.test_split, "skipped": note}
    barrier(dist)  # best.pt is complete before any rank reads it
    best = run_dir / CHECKPOINT_BEST
    model = unwrap(trainer.model)
    if best.exists():
        model.load_state_dict(load_checkpoint(best, map_location=device)["state_dict"])
    cm = evaluate_model(model, target_split(cfg, d.test_split), device, distributed=dist.enabled,
                        amp=cfg.train.amp, channels_last=cfg.train.channels_last)
    weights = best.name if best.exists() else "the last iteration"
    return {"split": d.test_split, "checkpoint": weights, **cm.summary()}


def launch(command: str, request: RunRequest, build: Callable[..., Trainer]) -> dict:
    """The whole of `uda-seg train|adapt`: config, processes, run directory, training, test.
    Returns the metrics document."""
    cfg, resume_dir = load_run_config(request)
    has_test = resolve_data(cfg)
    dist, device = setup_distributed(cfg.train.device)
    try:
        configure_determinism(cfg.train.deterministic)
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        run_dir = prepare_run_dir(cfg, command, resume_dir, request.overwrite, dist)
        trainer = build(cfg, dist, device)
        if dist.rank:
            seed_everything(cfg.train.seed + dist.rank)  # independent random streams per rank
        if dist.is_main:
            log.info("run %s: %s", run_dir, json.dumps(to_dict(cfg.train)))
            if not has_test:
                log.warning("%s has no '%s' split: the run selects and reports on '%s' only",
                            cfg.data.target_root, cfg.data.test_split, cfg.data.val_split)
        return fit(cfg, trainer, run_dir, dist, device, resume=resume_dir is not None,
                   stop_at=request.stop_at)
    finally:
        cleanup_distributed()
