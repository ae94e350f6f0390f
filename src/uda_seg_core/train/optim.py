"""Optimisers of the paper (section IV-B, Table IV) and the small helpers around them.

    opt_g = build_segmentation_optimizer(model, cfg)       # SGD | Adam | RMSprop (train.optimizer)
    opt_d = build_discriminator_optimizer(d, cfg)          # Adam, lr 1e-4, betas (0.9, 0.99)

`OPTIMIZERS` is the registry behind `train.optimizer`; its names are the config's choices
(`config.OptimizerName`), so a bad name is refused when the config is built.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from uda_seg_core.config import Config, ConfigError, TrainConfig
from uda_seg_core.runtime import unwrap

# train.optimizer -> factory(parameter groups, train config)
OPTIMIZERS: dict[str, Callable[[list[dict], TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, t: torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum),
    "adam": lambda groups, t: torch.optim.Adam(groups, lr=t.lr),
    "rmsprop": lambda groups, t: torch.optim.RMSprop(groups, lr=t.lr, momentum=t.momentum),
    "adamw": lambda groups, t: torch.optim.AdamW(groups, lr=t.lr),
}


def build_segmentation_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD (the paper's choice), Adam or RMSprop on BiSeNet's parameter groups (Table IV);
    weight decay only where the model's groups allow it."""
    t = cfg.train
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}, "
                          f"got {t.optimizer!r}")
    return OPTIMIZERS[t.optimizer](unwrap(model).param_groups(t.weight_decay), t)


def build_discriminator_optimizer(discriminator: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Adam, lr 1e-4, betas (0.9, 0.99), as in the paper (section IV-B)."""
    a = cfg.adapt
    if len(a.d_betas) != 2:
        raise ConfigError(f"adapt.d_betas must hold two numbers, got {a.d_betas}")
    return torch.optim.Adam(unwrap(discriminator).parameters(), lr=a.d_lr, betas=tuple(a.d_betas))


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
