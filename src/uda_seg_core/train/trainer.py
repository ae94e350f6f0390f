"""What a training job hands to the loop: the `Trainer` (networks, optimisation state, data
streams, the step function, hooks) and the `LoopState` it carries from one iteration to the
next (and from a checkpoint into a resumed run)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from uda_seg_core.config import Config
from uda_seg_core.runtime import unwrap
from uda_seg_core.train.loaders import LoaderCycle


@dataclass
class Trainer:
    """What one job trains: networks, optimisation state and the step function.

    `step(batches) -> dict of float losses` gets one batch per entry of `loaders`
    (already on the device). The 'source' loader defines the epochs (the first loader
    when there is no source: a fine-tune on target frames alone).
    """

    command: str  # 'train' | 'adapt' | 'finetune'
    model: nn.Module  # G, possibly DDP-wrapped
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    scalers: dict[str, torch.amp.GradScaler]
    loaders: dict[str, LoaderCycle]
    step: Callable[[dict[str, dict]], dict[str, float]]
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)  # {'discriminator': D}
    # Called with the 1-based number of the epoch about to start; returns scalars to log.
    epoch_hooks: list[Callable[[int], dict]] = field(default_factory=list)
    # Called after a resume with the iteration it restarts from (e.g. re-attach pruning masks).
    resume_hooks: list[Callable[[int], None]] = field(default_factory=list)
    state_dict_of: Callable[[str, nn.Module], dict] = field(
        default=lambda name, module: unwrap(module).state_dict())

    @property
    def iterations_per_epoch(self) -> int:
        epochs_of = self.loaders.get("source") or next(iter(self.loaders.values()))
        return epochs_of.batches_per_epoch

    def train_mode(self) -> None:
        self.model.train()
        for module in self.extra_modules.values():
            module.train()


@dataclass
class LoopState:
    iteration: int = 0
    best_miou: float = -1.0
    best_iteration: int = -1
    history: list[dict] = field(default_factory=list)  # one entry per validation
    epochs: list[dict] = field(default_factory=list)  # one entry per finished epoch
    train_seconds: float = 0.0  # time spent in iterations (not validation or checkpoints)
    timed_iterations: int = 0
    # sums of each step loss since the last validation, and over how many iterations: the
    # next history entry keeps their means (`train_losses`), then they restart
    interval_losses: dict[str, float] = field(default_factory=dict)
    interval_iterations: int = 0


def total_iterations(cfg: Config, trainer: Trainer) -> int:
    return cfg.train.max_iters or cfg.train.epochs * trainer.iterations_per_epoch
