"""Fine-tuning a network that already exists (a pruned one, typically) through the same
`Trainer` and `iterate` as `uda-seg train|adapt`: the same step functions, AMP and grad
scalers, loaders and schedules, only without a run directory.

    summary = finetune(model, cfg, 300, method="adversarial")     # D fresh or restored
    summary = finetune(model, cfg, 300, teacher=unpruned, distill=1.0)
    summary = finetune(model, cfg, 300, method="target-distill", teacher=adapted)

`method`: 'supervised' (eq. 4 on the source labels), 'adversarial' (eqs. 1-5, D
restored from `discriminator_state` when given, else a fresh one), or 'target-distill'
(the pixel-mean KL divergence from the frozen `teacher`'s softmax on unlabelled target
frames, nothing else: no labels and no source data; what `uda-seg deploy` uses to keep an
adapted network's adaptation in its pruned copies; with `student_scale` < 1 the student
sees the frames smaller than the teacher does: resolution distillation for a network
served at a smaller input size). With a `teacher` and `distill` > 0
the supervised loss gains `distill` x that KL divergence on the source batch. Poly decay
runs over the fine-tune's own iterations.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from uda_seg_core.config import Config
from uda_seg_core.runtime import DistInfo, grad_scaler, resolve_device
from uda_seg_core.train.adversarial import adversarial_step, build_adversarial_discriminator
from uda_seg_core.train.loaders import source_loader, target_loader
from uda_seg_core.train.loop import iterate
from uda_seg_core.train.optim import build_discriminator_optimizer, build_segmentation_optimizer
from uda_seg_core.train.schedules import poly_scheduler
from uda_seg_core.train.supervised import (
    distillation_step,
    supervised_step,
    target_distillation_step,
)
from uda_seg_core.train.trainer import Trainer

FINETUNE_METHODS = ("supervised", "adversarial", "target-distill")


class FinetuneError(ValueError):
    """A fine-tune that cannot run as asked (unknown method, distillation without teacher)."""


def finetune_trainer(model: nn.Module, cfg: Config, iters: int, device: torch.device, *,
                     method: str = "supervised", discriminator_state: dict | None = None,
                     teacher: nn.Module | None = None, distill: float = 0.0,
                     student_scale: Sequence[float] = (1.0, 1.0)) -> Trainer:
    """The Trainer of a fine-tune: `model` as G, the method's step, poly decay over `iters`."""
    if method not in FINETUNE_METHODS:
        raise FinetuneError(f"unknown fine-tune method '{method}'; choose from "
                            f"{', '.join(FINETUNE_METHODS)}")
    if tuple(student_scale) != (1.0, 1.0) and method != "target-distill":
        raise FinetuneError("a student_scale (resolution distillation) needs the "
                            "target-distill fine-tune")
    if distill > 0 and (teacher is None or method != "supervised"):
        raise FinetuneError("distillation needs a teacher and the supervised fine-tune")
    dist = DistInfo()
    opt_g = build_segmentation_optimizer(model, cfg)
    scalers = {"g": grad_scaler(device, cfg.train.amp)}
    if method == "target-distill":
        return _target_distill_trainer(model, cfg, iters, device, teacher, opt_g, scalers,
                                       student_scale)
    trainer = Trainer(command="finetune", model=model, optimizers={"g": opt_g},
                      schedulers={"g": poly_scheduler(opt_g, iters, cfg.train.poly_power)},
                      scalers=scalers, loaders={"source": source_loader(cfg, dist)},
                      step=lambda b: supervised_step(model, opt_g, b["source"], cfg, scalers["g"]))
    if method == "adversarial":
        d = build_adversarial_discriminator(cfg, device)
        if discriminator_state is not None:
            d.load_state_dict(discriminator_state)
        opt_d = build_discriminator_optimizer(d, cfg)
        scalers["d"] = grad_scaler(device, cfg.train.amp)
        trainer.optimizers["d"] = opt_d
        trainer.schedulers["d"] = poly_scheduler(opt_d, iters, cfg.train.poly_power)
        trainer.loaders["target"] = target_loader(cfg, dist)
        trainer.extra_modules["discriminator"] = d
        trainer.step = lambda b: adversarial_step(model, d, opt_g, opt_d, b["source"], b["target"],
                                                  cfg, scalers)
    elif distill > 0:
        teacher = teacher.to(device).eval()
        trainer.step = lambda b: distillation_step(model, teacher, opt_g, b["source"], cfg, distill,
                                                   scalers["g"])
    return trainer


def _target_distill_trainer(model: nn.Module, cfg: Config, iters: int, device: torch.device,
                            teacher: nn.Module | None, opt_g, scalers: dict,
                            student_scale: Sequence[float] = (1.0, 1.0)) -> Trainer:
    """Distillation alone on unlabelled target frames: the only loader is the target's."""
    if teacher is None:
        raise FinetuneError("the target-distill fine-tune needs a teacher (the adapted network)")
    teacher = teacher.to(device).eval()
    return Trainer(command="finetune", model=model, optimizers={"g": opt_g},
                   schedulers={"g": poly_scheduler(opt_g, iters, cfg.train.poly_power)},
                   scalers=scalers, loaders={"target": target_loader(cfg, DistInfo())},
                   step=lambda b: target_distillation_step(model, teacher, opt_g, b["target"],
                                                           cfg, scalers["g"], student_scale))


def finetune(model: nn.Module, cfg: Config, iters: int, *, method: str = "supervised",
             discriminator_state: dict | None = None, device: str = "auto",
             lr: float | None = None, teacher: nn.Module | None = None, distill: float = 0.0,
             student_scale: Sequence[float] = (1.0, 1.0), progress: bool = True) -> dict:
    """Train `model` in place for `iters` iterations; `lr` defaults to the config's train.lr.
    `student_scale` < 1 (target-distill only): the student sees the frames resized by it,
    the teacher at their size (`supervised.target_distillation_step`).

    Returns the method, iterations, lr, distillation weight, the seconds taken and the mean
    of each loss over the last 20 iterations.
    """
    dev = torch.device(resolve_device(device))
    cfg = copy.deepcopy(cfg)
    if lr is not None:
        cfg.train.lr = float(lr)
    model.to(dev)
    trainer = finetune_trainer(model, cfg, iters, dev, method=method,
                               discriminator_state=discriminator_state, teacher=teacher,
                               distill=distill, student_scale=tuple(student_scale))
    trainer.train_mode()
    history: list[dict] = []
    started = time.perf_counter()
    bar = tqdm(total=iters, desc=f"fine-tune ({method})", dynamic_ncols=True, disable=not progress)
    for _, losses, _ in iterate(trainer, dev, 0, iters, cfg.train.channels_last):
        history.append(losses)
        bar.update(1)
        if len(history) % 10 == 0:
            shown = sum(v for k, v in losses.items() if k.startswith("dice")) or losses.get(
                "distill", 0.0)
            bar.set_postfix(loss=f"{shown:.3f}")
    bar.close()
    model.eval()
    tail = history[-20:]
    mean = {k: sum(h[k] for h in tail) / len(tail) for k in tail[0]} if tail else {}
    return {"method": method, "iters": iters, "lr": cfg.train.lr, "distill": distill,
            "student_scale": [float(v) for v in student_scale],
            "seconds": time.perf_counter() - started, "final_losses": mean}
