"""What `last.pt` holds beyond the weights, and putting it back: `--resume` continues a run
exactly where it stopped (iteration, optimisers, schedules, grad scalers, RNG streams,
validation history), or names the file and what does not fit."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from uda_seg_core.checkpoint import CheckpointError, load_checkpoint
from uda_seg_core.config import Config
from uda_seg_core.runtime import DistInfo, set_rng_state, unwrap
from uda_seg_core.train.run_dir import CHECKPOINT_LAST
from uda_seg_core.train.trainer import LoopState, Trainer

log = logging.getLogger(__name__)


def resumable_state(trainer: Trainer, state: LoopState, rng: list[dict], max_iters: int) -> dict:
    return {
        "training_state": {
            "command": trainer.command,
            "iteration": state.iteration,
            "max_iters": max_iters,
            "best_miou": state.best_miou,
            "best_iteration": state.best_iteration,
            "history": state.history,
            "epochs": state.epochs,
            "train_seconds": state.train_seconds,
            "timed_iterations": state.timed_iterations,
            "interval_losses": state.interval_losses,
            "interval_iterations": state.interval_iterations,
        },
        "modules": {name: trainer.state_dict_of(name, m)
                    for name, m in trainer.extra_modules.items()},
        "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in trainer.schedulers.items()},
        "scalers": {name: s.state_dict() for name, s in trainer.scalers.items()},
        "rng": rng,
    }


def _check_resumable(ckpt: dict, path: Path, trainer: Trainer, cfg: Config) -> dict:
    """The training state of `ckpt`, if it was written by this command for this model."""
    ts = ckpt.get("training_state")
    if ts is None:
        raise CheckpointError(f"{path} holds weights only, not a resumable training state "
                              f"(resume from a run directory's {CHECKPOINT_LAST})")
    if ts.get("command") != trainer.command:
        raise CheckpointError(f"{path} was written by `uda-seg {ts.get('command')}`, not "
                              f"`uda-seg {trainer.command}`; resume it with that command")
    for key in ("backbone", "num_classes"):
        stored, wanted = ckpt["model_config"].get(key), getattr(cfg.model, key)
        if stored != wanted:
            raise CheckpointError(f"{path}: checkpoint has model.{key}={stored!r} but the config "
                                  f"asks for {wanted!r}; do not override model settings on resume")
    return ts


def _load_states(trainer: Trainer, ckpt: dict, path: Path) -> None:
    try:
        unwrap(trainer.model).load_state_dict(ckpt["state_dict"])
        for name, module in trainer.extra_modules.items():
            if name not in ckpt["modules"]:
                raise KeyError(f"no state for the {name}")
            unwrap(module).load_state_dict(ckpt["modules"][name])
        for kind, objects in (("optimizers", trainer.optimizers),
                              ("schedulers", trainer.schedulers), ("scalers", trainer.scalers)):
            for name, obj in objects.items():
                obj.load_state_dict(ckpt[kind][name])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} does not fit this run's networks/optimisers: {first}. "
                              f"Was it written with another discriminator or model? Check "
                              f"config.yaml") from exc


def restore(trainer: Trainer, path: Path, cfg: Config, dist: DistInfo,
            device: torch.device) -> LoopState:
    """Load last.pt into the trainer; any mismatch is a CheckpointError naming the file."""
    ckpt = load_checkpoint(path, map_location=device)
    ts = _check_resumable(ckpt, path, trainer, cfg)
    _load_states(trainer, ckpt, path)
    rng = ckpt.get("rng") or []
    if len(rng) == dist.world_size:
        set_rng_state(rng[dist.rank])
    elif dist.is_main:
        log.warning("%s was written by %d process(es), this run has %d: random streams are "
                    "re-seeded, so the continuation is not bit-identical", path, len(rng),
                    dist.world_size)
    state = LoopState(iteration=int(ts["iteration"]), best_miou=float(ts["best_miou"]),
                      best_iteration=int(ts["best_iteration"]), history=list(ts["history"]),
                      epochs=list(ts["epochs"]), train_seconds=float(ts["train_seconds"]),
                      timed_iterations=int(ts["timed_iterations"]),
                      # absent from checkpoints written before the loop kept them
                      interval_losses=dict(ts.get("interval_losses", {})),
                      interval_iterations=int(ts.get("interval_iterations", 0)))
    for hook in trainer.resume_hooks:
        hook(state.iteration)
    return state
