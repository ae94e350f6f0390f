"""Output-space adversarial adaptation, source -> target, in one stage (`uda-seg adapt`).

    uda-seg adapt --config config/adapt_idda2camvid.yaml                      # FCD
    uda-seg adapt --config config/adapt_idda2camvid.yaml adapt.discriminator=dwd
    uda-seg adapt --resume runs/IDDA2CamVid_bisenet-r101_fcd                  # continue
    torchrun --nproc_per_node 2 -m uda_seg_core.cli adapt --config config/adapt_idda2camvid.yaml

The paper's section III-A (eqs. 1-5), after AdaptSegNet: each iteration takes one
labelled source batch and one unlabelled target batch.

1. Generator step, D frozen: L_seg (dice + two auxiliary dice terms) on the source
   prediction P_s, plus lambda_adv * L_adv, which asks D to call the target softmax
   P_t 'source' (eq. 5); gradients reach G through the frozen D.
2. Discriminator step: D learns softmax(P_s) -> SOURCE_LABEL and softmax(P_t) ->
   TARGET_LABEL on detached predictions (eq. 2), so it never moves G.

Beyond the paper, the same step adds a term on the target predictions when
`adapt.target_loss` asks (`train/target_terms.py`): entropy minimisation (ADVENT's MinEnt)
or self-training on class-balanced pseudo-labels of the `train.init_from` network, with or
without a discriminator (`adapt.discriminator: none` builds none and trains no D):

    uda-seg adapt --config C adapt.discriminator=none adapt.target_loss=entropy
    uda-seg adapt --config C adapt.discriminator=none adapt.target_loss=pseudo_label \
        train.init_from=runs/source_only/best.pt
    uda-seg adapt --config C adapt.target_loss=pseudo_label train.init_from=...  # FCD + ST

`adapt.joint_batchnorm=true` puts the source and target batches through G in one forward,
so BatchNorm normalises both domains with one set of statistics in training, as its
running statistics will at inference; `adapt.teacher` names a pseudo-label teacher other
than the starting network (e.g. its `uda-seg adapt-bn` version):

    uda-seg adapt --config C adapt.discriminator=none adapt.target_loss=pseudo_label \
        train.init_from=runs/source_only/best.pt adapt.teacher=bn.pt adapt.joint_batchnorm=true

`adversarial_step` is the one step function for every discriminator (FCD, TFD, DWD,
CPD) and method. The D step also logs how often D names each domain right
(`d_acc_source`, `d_acc_target`): near 0.5 on both, D cannot tell the domains apart.
With lambda_adv = 0 and no target term its generator update is exactly a source-only step
(the parameters; BatchNorm running statistics also see the target images, as in AdaptSegNet).
Optimisers: SGD (or Adam / RMSprop) for G, Adam (betas 0.9, 0.99) for D, poly decay per
iteration for both. During-training pruning of D (`adapt.prune`) runs at the start of
every epoch.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from uda_seg_core.config import Config, ConfigError
from uda_seg_core.losses import (
    SOURCE_LABEL,
    TARGET_LABEL,
    adversarial_loss,
    discriminator_loss,
)
from uda_seg_core.models import build_discriminator
from uda_seg_core.pruning import dense_state_dict, prune_discriminator
from uda_seg_core.runtime import DistInfo, amp_step, autocast, grad_scaler, unwrap, wrap_ddp
from uda_seg_core.train.loaders import source_loader, target_loader
from uda_seg_core.train.optim import (
    build_discriminator_optimizer,
    build_segmentation_optimizer,
    set_requires_grad,
)
from uda_seg_core.train.schedules import poly_scheduler
from uda_seg_core.train.supervised import build_model, labelled_loss, source_loss
from uda_seg_core.train.target_terms import PseudoLabeller, build_pseudo_labeller, target_term
from uda_seg_core.train.trainer import Trainer, total_iterations

Scalers = dict[str, torch.amp.GradScaler]


def generator_step(model: nn.Module, discriminator: nn.Module | None,
                   opt_g: torch.optim.Optimizer, source_batch: dict, target_batch: dict,
                   cfg: Config, scaler: torch.amp.GradScaler | None = None,
                   labeller: PseudoLabeller | None = None,
                   ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Update G with L_seg(I_s) + lambda_adv * L_adv(I_t) (eq. 1) while D is frozen, plus
    `adapt.target_weight` x the target term of `adapt.target_loss` (MinEnt, self-training).

    Returns the losses and the detached softmax predictions (P_s, P_t) for the
    discriminator step. D is called without its DDP wrapper: it only passes gradients
    back to G here, so there is nothing of D's to synchronise. Without a D
    (`adapt.discriminator: none`) there is no L_adv. With `adapt.joint_batchnorm` the two
    batches go through G in one forward (`joint_generator_step`).
    """
    if cfg.adapt.joint_batchnorm:
        return joint_generator_step(model, discriminator, opt_g, source_batch, target_batch,
                                    cfg, scaler, labeller)
    images_t = target_batch["image"]
    lambda_adv = cfg.adapt.lambda_adv if discriminator is not None else 0.0
    with_target_term = cfg.adapt.target_loss != "none"
    with frozen(discriminator) as d, amp_step(opt_g, scaler) as backward:
        # L_seg is backpropagated before the target forward: one forward per backward
        # (as DistributedDataParallel wants), and the source graph is freed early.
        loss_seg, parts, logits_s = source_loss(model, source_batch, cfg)
        backward(loss_seg)
        p_s = F.softmax(logits_s.detach().float(), dim=1)
        # Only the main output of the target image is adapted; its auxiliary heads are
        # not computed. Without a target term there is nothing to backpropagate.
        with torch.set_grad_enabled(lambda_adv > 0 or with_target_term):
            with autocast(images_t.device, cfg.train.amp):
                logits_t = model(images_t, aux_mode="eval")
            loss_t, extra, p_t = target_losses(logits_t, images_t, d, lambda_adv, cfg,
                                               labeller)
        if lambda_adv > 0 or with_target_term:
            backward(loss_t)
    return {**{name: float(value) for name, value in parts.items()}, **extra}, p_s, p_t.detach()


def joint_generator_step(model: nn.Module, discriminator: nn.Module | None,
                         opt_g: torch.optim.Optimizer, source_batch: dict, target_batch: dict,
                         cfg: Config, scaler: torch.amp.GradScaler | None = None,
                         labeller: PseudoLabeller | None = None,
                         ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """`generator_step` with the source and target batches in one forward: BatchNorm
    normalises both domains with the statistics of the two together, as its running
    statistics (a mix of both) will at inference. One backward of L_seg + the target terms.
    """
    images_s, images_t = source_batch["image"], target_batch["image"]
    if images_s.shape[1:] != images_t.shape[1:]:
        raise ConfigError(f"adapt.joint_batchnorm: source and target crops must be one size, "
                          f"got {tuple(images_s.shape[-2:])} and {tuple(images_t.shape[-2:])}")
    n = images_s.shape[0]
    lambda_adv = cfg.adapt.lambda_adv if discriminator is not None else 0.0
    with frozen(discriminator) as d, amp_step(opt_g, scaler) as backward:
        with autocast(images_s.device, cfg.train.amp):
            outputs = model(torch.cat([images_s, images_t]), aux_mode="train")
        loss_seg, parts = labelled_loss([o[:n] for o in outputs], source_batch["label"], cfg)
        loss_t, extra, p_t = target_losses(outputs[0][n:], images_t, d, lambda_adv, cfg,
                                           labeller)
        backward(loss_seg + loss_t)
    p_s = F.softmax(outputs[0][:n].detach().float(), dim=1)
    return {**{name: float(value) for name, value in parts.items()}, **extra}, p_s, p_t.detach()


@contextmanager
def frozen(discriminator: nn.Module | None) -> Iterator[nn.Module | None]:
    """D without its DDP wrapper and with no parameter gradients while G steps (it only
    passes gradients back to G), restored afterwards; None stays None."""
    d = unwrap(discriminator) if discriminator is not None else None
    if d is None:
        yield None
        return
    set_requires_grad(d, False)
    try:
        yield d
    finally:
        set_requires_grad(d, True)


def target_losses(logits_t: torch.Tensor, images_t: torch.Tensor, d: nn.Module | None,
                  lambda_adv: float, cfg: Config, labeller: PseudoLabeller | None,
                  ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """lambda_adv * L_adv (eq. 5, D frozen) + `adapt.target_weight` x the target term, what
    to log of them, and the target softmax P_t."""
    p_t = F.softmax(logits_t.float(), dim=1)
    loss_t = torch.zeros((), device=images_t.device)
    extra: dict[str, float] = {}
    if d is not None:
        with autocast(images_t.device, cfg.train.amp):
            d_t = d(p_t)
        loss_adv = adversarial_loss(d_t.float())
        extra["adv"] = float(loss_adv.detach())
        loss_t = loss_t + lambda_adv * loss_adv
    if cfg.adapt.target_loss != "none":
        term, logged = target_term(logits_t.float(), images_t, cfg, labeller)
        extra.update(logged)
        loss_t = loss_t + cfg.adapt.target_weight * term
    return loss_t, extra, p_t


def discriminator_step(discriminator: nn.Module, opt_d: torch.optim.Optimizer, p_s: torch.Tensor,
                       p_t: torch.Tensor, cfg: Config,
                       scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """Update D on detached predictions: P_s -> SOURCE_LABEL, P_t -> TARGET_LABEL (eq. 2).

    Each domain's half of L_d is backpropagated on its own (as in AdaptSegNet), which
    keeps one forward per backward under DistributedDataParallel.
    """
    losses = {}
    with amp_step(opt_d, scaler) as backward:
        for name, p, label in (("d_source", p_s, SOURCE_LABEL),
                               ("d_target", p_t, TARGET_LABEL)):
            with autocast(p.device, cfg.train.amp):
                logits = discriminator(p.detach())
            loss = discriminator_loss(logits.float(), label) / 2
            backward(loss)
            losses[name] = float(loss.detach())
            # how often D names the domain right (a map cell each): does the term act?
            said_target = logits.detach().float() > 0
            right = said_target if label == TARGET_LABEL else ~said_target
            losses[f"{name.replace('d_', 'd_acc_')}"] = float(right.float().mean())
    losses["d"] = losses["d_source"] + losses["d_target"]
    return losses


def adversarial_step(model: nn.Module, discriminator: nn.Module, opt_g: torch.optim.Optimizer,
                     opt_d: torch.optim.Optimizer | None, source_batch: dict,
                     target_batch: dict, cfg: Config, scalers: Scalers | None = None,
                     labeller: PseudoLabeller | None = None) -> dict[str, float]:
    """One iteration of eqs. 1-5 for any discriminator: G step (D frozen), then D step.

    Batches are dicts with 'image' (and 'label' for the source) already on the device;
    target labels are never read. Returns every loss as a float.
    """
    scalers = scalers or {}
    losses, p_s, p_t = generator_step(model, discriminator, opt_g, source_batch, target_batch, cfg,
                                      scalers.get("g"), labeller)
    if discriminator is not None:
        losses.update(discriminator_step(discriminator, opt_d, p_s, p_t, cfg, scalers.get("d")))
    return losses


def build_adversarial_discriminator(cfg: Config, device: torch.device) -> nn.Module:
    a = cfg.adapt
    return build_discriminator(a.discriminator, cfg.model.num_classes, width=a.d_width,
                               dropout=a.dropout,
                               rank=a.rank).to(device)


def pruning_hooks(cfg: Config, discriminator: nn.Module, per_epoch: int) -> tuple[list, list]:
    """During-training pruning of D (the paper's DTP): (epoch hooks, resume hooks)."""
    if cfg.adapt.prune == "none":
        return [], []

    def at_epoch_start(epoch: int) -> dict:
        report = prune_discriminator(discriminator, epoch, cfg.adapt)
        return {"prune/sparsity": report["sparsity"], "prune/target": report["target"]}

    def after_resume(iteration: int) -> None:
        # Kept masks are not in the checkpoint (it stores dense weights); the zeros are,
        # so pruning again to the same epoch's target re-creates the same mask.
        if cfg.adapt.prune_keep_masks and iteration % per_epoch:
            prune_discriminator(discriminator, iteration // per_epoch + 1, cfg.adapt)

    return [at_epoch_start], [after_resume]


def build_adversarial_trainer(cfg: Config, dist: DistInfo, device: torch.device) -> Trainer:
    """G, D (unless `adapt.discriminator: none`), their optimisers and schedules, the two
    data streams, and the pseudo-labeller when the target term needs one."""
    model = build_model(cfg, device)
    # The target forward uses only the main head, so the auxiliary heads sit out of that
    # backward pass: DDP has to be told some parameters may receive no gradient.
    g = wrap_ddp(model, dist, device, find_unused_parameters=True)
    opt_g = build_segmentation_optimizer(model, cfg)
    optimizers, scalers = {"g": opt_g}, {"g": grad_scaler(device, cfg.train.amp)}
    extra_modules, d, opt_d = {}, None, None
    if cfg.adapt.discriminator != "none":
        discriminator = build_adversarial_discriminator(cfg, device)
        opt_d = build_discriminator_optimizer(discriminator, cfg)
        d = wrap_ddp(discriminator, dist, device)
        optimizers["d"], scalers["d"] = opt_d, grad_scaler(device, cfg.train.amp)
        extra_modules["discriminator"] = d
    labeller = (build_pseudo_labeller(cfg, device) if cfg.adapt.target_loss == "pseudo_label"
                else None)
    loaders = {"source": source_loader(cfg, dist), "target": target_loader(cfg, dist)}
    epoch_hooks, resume_hooks = ([], []) if d is None else pruning_hooks(
        cfg, unwrap(d), loaders["source"].batches_per_epoch)
    trainer = Trainer(
        command="adapt", model=g, optimizers=optimizers, schedulers={}, scalers=scalers,
        loaders=loaders, extra_modules=extra_modules, epoch_hooks=epoch_hooks,
        resume_hooks=resume_hooks,
        step=lambda b: adversarial_step(g, d, opt_g, opt_d, b["source"], b["target"], cfg,
                                        scalers, labeller),
        state_dict_of=lambda name, module: dense_state_dict(module),
    )
    max_iters = total_iterations(cfg, trainer)
    trainer.schedulers = {"g": poly_scheduler(opt_g, max_iters, cfg.train.poly_power,
                                              cfg.train.warmup_iters)}
    if opt_d is not None:
        trainer.schedulers["d"] = poly_scheduler(opt_d, max_iters, cfg.train.poly_power)
    return trainer
