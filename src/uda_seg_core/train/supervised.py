"""Supervised training of BiSeNet on one labelled domain (`uda-seg train`), and its step.

    uda-seg train --config config/train_camvid.yaml          # the upper bound (target labels)
    uda-seg train --config config/train_source_only.yaml     # the 'source only' baseline
    uda-seg train --config config/train_camvid.yaml train.epochs=10 model.backbone=resnet18
    uda-seg train --resume runs/CamVid_bisenet-r101_supervised   # continue a stopped run
    torchrun --nproc_per_node 2 -m uda_seg_core.cli train --config ...

The labelled domain is `data.source_format` / `data.source_root` (CamVid's train split for
the upper bound, IDDA for source only). Model selection always uses the target val
split (`data.target_*`, `data.val_split`) and the selected weights are reported on the
target test split, so the upper bound and the baselines are measured the same way.
Loss: eq. 4 of the paper, dice on the main output plus two auxiliary dice terms.
Also the distillation steps of a fine-tune: the supervised loss plus W x the KL divergence
from a frozen teacher's softmax (`losses.distillation_loss`), or that KL divergence alone on
unlabelled target frames (`target_distillation_step`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uda_seg_core.config import Config
from uda_seg_core.losses import distillation_loss, segmentation_loss
from uda_seg_core.models import build_segmentation_model, init_from_checkpoint
from uda_seg_core.runtime import DistInfo, amp_step, autocast, grad_scaler, wrap_ddp
from uda_seg_core.train.loaders import source_loader
from uda_seg_core.train.optim import build_segmentation_optimizer
from uda_seg_core.train.schedules import poly_scheduler
from uda_seg_core.train.trainer import Trainer, total_iterations


def source_loss(model: nn.Module, batch: dict,
                cfg: Config) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """L_seg (eq. 4) of a labelled batch; also returns the main logits for the caller."""
    images = batch["image"]
    with autocast(images.device, cfg.train.amp):
        outputs = model(images, aux_mode="train")  # (main, aux16, aux32)
    loss, parts = labelled_loss(outputs, batch["label"], cfg)
    return loss, parts, outputs[0]


def labelled_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor,
                  cfg: Config) -> tuple[torch.Tensor, dict]:
    """L_seg (eq. 4) of the (main, aux16, aux32) outputs of a labelled batch."""
    weights = torch.tensor(cfg.train.class_weights) if cfg.train.class_weights else None
    return segmentation_loss(tuple(o.float() for o in outputs), labels,
                             aux_weight=cfg.train.aux_weight, loss=cfg.train.loss,
                             class_weights=weights)


def supervised_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, cfg: Config,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One iteration of supervised training; returns the loss parts as floats."""
    with amp_step(optimizer, scaler) as backward:
        loss, parts, _ = source_loss(model, batch, cfg)
        backward(loss)
    return {name: float(value) for name, value in parts.items()}


def distillation_step(model: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer,
                      batch: dict, cfg: Config, weight: float,
                      scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One supervised iteration (eq. 4 on the source labels) plus `weight` x distillation
    from the frozen `teacher` (the unpruned network, for a pruned student)."""
    with amp_step(optimizer, scaler) as backward:
        loss, parts, logits = source_loss(model, batch, cfg)
        with torch.no_grad(), autocast(batch["image"].device, cfg.train.amp):
            teacher_logits = teacher(batch["image"], aux_mode="eval")
        kd = distillation_loss(logits, teacher_logits)
        backward(loss + weight * kd)
    out = {name: float(value) for name, value in parts.items()}
    out["distill"] = float(kd.detach())
    return out


def target_distillation_step(model: nn.Module, teacher: nn.Module,
                             optimizer: torch.optim.Optimizer, batch: dict, cfg: Config,
                             scaler: torch.amp.GradScaler | None = None,
                             student_scale: Sequence[float] = (1.0, 1.0)) -> dict[str, float]:
    """One iteration of distillation alone on an unlabelled batch (target frames): the
    student's main output is pulled towards the frozen `teacher`'s softmax. No labels of
    either domain: an adapted teacher hands its adaptation to a pruned student.

    `student_scale` (H, W factors) < 1: resolution distillation. The student sees the batch
    resized by that factor (bilinear, as the Segmenter resizes a frame to a smaller input
    size), the teacher the batch itself, and the student's scores, upsampled back, must
    match the teacher's: a network served at a smaller input size learns to give what the
    adapted network gives at the full size."""
    images = batch["image"]
    full = images.shape[-2:]
    with amp_step(optimizer, scaler) as backward:
        with autocast(images.device, cfg.train.amp):
            student = model(student_view(images, student_scale), aux_mode="train")[0]
            if student.shape[-2:] != full:
                student = F.interpolate(student, size=full, mode="bilinear",
                                        align_corners=False)
        with torch.no_grad(), autocast(images.device, cfg.train.amp):
            teacher_logits = teacher(images, aux_mode="eval")
        kd = distillation_loss(student, teacher_logits)
        backward(kd)
    return {"distill": float(kd.detach())}


def student_view(images: torch.Tensor, scale: Sequence[float]) -> torch.Tensor:
    """`images` (N, C, H, W) resized by `scale` = (H factor, W factor); as is at (1, 1)."""
    h, w = images.shape[-2:]
    size = (max(1, round(h * float(scale[0]))), max(1, round(w * float(scale[1]))))
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def build_model(cfg: Config, device: torch.device) -> nn.Module:
    """BiSeNet as the config says, from random init or from `train.init_from`'s weights."""
    model = build_segmentation_model(cfg.model)
    if cfg.train.init_from:
        init_from_checkpoint(model, cfg.train.init_from)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_supervised_trainer(cfg: Config, dist: DistInfo, device: torch.device) -> Trainer:
    model = build_model(cfg, device)
    optimizer = build_segmentation_optimizer(model, cfg)
    scaler = grad_scaler(device, cfg.train.amp)
    trainer = Trainer(command="train", model=wrap_ddp(model, dist, device),
                      optimizers={"g": optimizer}, schedulers={}, scalers={"g": scaler},
                      loaders={"source": source_loader(cfg, dist)},
                      step=lambda batches: supervised_step(trainer.model, optimizer,
                                                           batches["source"], cfg, scaler))
    trainer.schedulers["g"] = poly_scheduler(optimizer, total_iterations(cfg, trainer),
                                             cfg.train.poly_power, cfg.train.warmup_iters)
    return trainer
