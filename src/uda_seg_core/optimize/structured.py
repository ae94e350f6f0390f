"""Structured (channel) pruning of BiSeNet with torch-pruning, for real speed-ups.

    uda-seg prune-structured --checkpoint runs/x/best.pt --ratio 0.5 --out runs/x/pruned50.pt
    uda-seg prune-structured --checkpoint runs/x/best.pt --ratio 0.5 --finetune-iters 300 \
        --evaluate --out runs/x/pruned50_ft.pt data.target_root=data/synthetic/camvid
    uda-seg prune-structured --checkpoint C --ratio 0.4 --scope group \
        --group-ratios spatial_path=0.25,heads=0.25 --out P.pt

Unstructured pruning (the paper's) zeroes weights inside dense tensors, which dense
kernels multiply all the same. Here whole output channels are removed: torch-pruning's
dependency graph finds every layer coupled to a channel (the next layer's input, its BN,
residual additions, the ARM attention product, the FFM concatenation) and shrinks them
together, so the network is smaller and every convolution cheaper. The classifiers of
the main and both auxiliary heads are left out, so the model keeps its 12 classes.

Channels are ranked by group magnitude (L2 norm over all coupled weights, by default).
`--scope`:
- 'global': one ranking across the whole network, `--ratio` of all channels go; layers
  whose channels matter less lose more (capped at --max-layer-ratio);
- 'layer': every layer loses `--ratio` of its channels;
- 'group': the paper's module groups (spatial_path, context_path, arm, ffm, heads) are
  each ranked on their own, with `--group-ratios name=r,...` and `--ratio` for the rest.
Channel counts are rounded to multiples of `--round-to` (8 by default: AVX2 holds 8 floats).

After each cut the BatchNorm statistics are re-estimated on `--bn-batches` batches of the
fine-tune's data (source; source and target for the adversarial method; no weights change): the stored statistics no longer describe the thinner layers' inputs,
and without this the pruned network's output collapses (mIoU 33.6 -> 3.4 % at ratio 0.3
on the synthetic target; 14.4 % with fresh statistics, before any fine-tune).

`--steps K` prunes iteratively: K rounds, each removing the same share of the channels
left and followed by N/K fine-tune iterations (gentler than one cut when N > 0).

The optional fine-tune (`--finetune-iters N`) trains the pruned network for N iterations
on the checkpoint's data config (dotted overrides after the flags change it) with the
training engineer's step functions: 'supervised' (source labels, eq. 4) or 'adversarial'
(eqs. 1-5, D restored from the checkpoint when it holds one, else a fresh D), optionally
plus `--distill W`: W x the pixel-mean KL divergence from the unpruned network's softmax
to the pruned one's on the source batch (the unpruned network is the teacher, frozen),
which recovers the pruned network faster than labels alone. The result
is an ordinary checkpoint: `load_model` rebuilds the pruned widths from the stored
tensors, so `Segmenter`, `uda-seg export` and the ROS node load it without extra flags.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

SCOPES = ("global", "layer", "group")
IMPORTANCES = ("l2", "l1", "bn")
FINETUNE_METHODS = ("auto", "supervised", "adversarial")
TRACE_SIZE = (64, 96)  # any size divisible by 32 traces the same graph; small is fast


class StructuredPruningError(ValueError):
    """A pruning request that cannot be carried out (bad ratio, unknown group, ...)."""


def classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The 1x1 convolutions that emit class scores (main and auxiliary heads).

    Their output width is the class count, which pruning must keep.
    """
    num_classes = int(getattr(model, "num_classes", 12))
    heads = [m for m in model.modules() if type(m).__name__ == "SegmentationHead"]
    layers = [head[-1] for head in heads if isinstance(head[-1], nn.Conv2d)]
    if not layers:  # another architecture: every conv that produces num_classes maps
        layers = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == num_classes]
    if not layers:
        raise StructuredPruningError(f"found no classifier layer with {num_classes} outputs to protect")
    return layers


def _importance(kind: str):
    import torch_pruning as tp

    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "bn":  # BN scale factors (network slimming)
        return tp.importance.BNScaleImportance()
    raise StructuredPruningError(f"unknown importance '{kind}'; choose from: {', '.join(IMPORTANCES)}")


def _check_ratio(ratio: float, what: str = "ratio") -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise StructuredPruningError(f"{what} must be in [0, 1), got {ratio}")
    return ratio


def parse_group_ratios(text: str | None) -> dict[str, float]:
    """'spatial_path=0.3,heads=0' -> {'spatial_path': 0.3, 'heads': 0.0}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise StructuredPruningError(f"group ratio '{part}' must look like name=ratio")
        out[name.strip()] = _check_ratio(float(value), f"ratio of group '{name.strip()}'")
    return out


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution, by module name (what pruning changed)."""
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def prune_channels(model: nn.Module, ratio: float, *, scope: str = "global",
                   group_ratios: dict[str, float] | None = None, importance: str = "l2",
                   round_to: int | None = 8, max_layer_ratio: float = 0.9,
                   trace_size: Sequence[int] = TRACE_SIZE) -> dict:
    """Remove channels from `model` in place; returns what was done (for the checkpoint).

    The graph is traced in 'train' output mode so the auxiliary heads, which hang off the
    context path, are shrunk together with the features they read. Tracing needs
    autograd, so this must not run under torch.no_grad().
    """
    import torch_pruning as tp

    ratio = _check_ratio(ratio)
    if scope not in SCOPES:
        raise StructuredPruningError(f"unknown scope '{scope}'; choose from: {', '.join(SCOPES)}")
    group_ratios = dict(group_ratios or {})
    ratio_dict = {}
    if scope == "group":
        groups = model.module_groups()
        unknown = sorted(set(group_ratios) - set(groups))
        if unknown:
            raise StructuredPruningError(f"unknown module group(s) {unknown}; the model has: {', '.join(groups)}")
        for name, modules in groups.items():
            ratio_dict[tuple(modules)] = group_ratios.get(name, ratio)
    elif group_ratios:
        raise StructuredPruningError("--group-ratios needs --scope group")
    was_training, aux_mode = model.training, getattr(model, "aux_mode", None)
    device = next(model.parameters()).device
    model.eval()
    model.aux_mode = "train"
    try:
        pruner = tp.pruner.BasePruner(
            model, torch.zeros(1, 3, *trace_size, device=device), importance=_importance(importance),
            global_pruning=scope == "global", pruning_ratio=ratio, pruning_ratio_dict=ratio_dict or None,
            max_pruning_ratio=max_layer_ratio, ignored_layers=classifier_layers(model), round_to=round_to,
        )
        pruner.step()
    finally:
        model.aux_mode = aux_mode
        model.train(was_training)
    return {"method": "structured-channel", "tool": f"torch-pruning {tp.__version__}", "ratio": ratio,
            "scope": scope, "group_ratios": group_ratios, "importance": importance, "round_to": round_to,
            "max_layer_ratio": max_layer_ratio}


def step_fraction(ratio: float, steps: int) -> float:
    """The fraction to remove at each of `steps` steps so that (1 - ratio) remains."""
    return 1.0 - (1.0 - ratio) ** (1.0 / steps)


def complexity(model: nn.Module, size: Sequence[int]) -> dict:
    """Parameters and eval-mode multiply-accumulates at input (1, 3, H, W)."""
    from uda_seg_core.models import count_macs, count_parameters

    return {"params": count_parameters(model), "macs": count_macs(model, (1, 3, *size)),
            "input_size": list(size)}


# --- fine-tune ---------------------------------------------------------------------------

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per pixel over the classes, averaged over the pixels."""
    import torch.nn.functional as F

    log_p_s = F.log_softmax(student_logits.float(), dim=1)
    log_p_t = F.log_softmax(teacher_logits.float(), dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def distillation_step(model: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer, batch: dict,
                      cfg, weight: float) -> dict[str, float]:
    """One supervised iteration (eq. 4 on the source labels) plus `weight` x distillation."""
    from uda_seg_core.train.supervised import source_loss

    optimizer.zero_grad(set_to_none=True)
    loss, parts, logits = source_loss(model, batch, cfg)
    with torch.no_grad():
        teacher_logits = teacher(batch["image"], aux_mode="eval")
    kd = distillation_loss(logits, teacher_logits)
    (loss + weight * kd).backward()
    optimizer.step()
    out = {name: float(value) for name, value in parts.items()}
    out["distill"] = float(kd.detach())
    return out


def finetune(model: nn.Module, cfg, iters: int, *, method: str = "supervised",
             discriminator_state: dict | None = None, device: str = "auto",
             lr: float | None = None, teacher: nn.Module | None = None, distill: float = 0.0,
             progress: bool = True) -> dict:
    """Train the pruned `model` for `iters` iterations with the training step functions.

    `lr` defaults to the config's train.lr; poly decay runs over the `iters` iterations.
    With `teacher` and `distill` > 0 (supervised only) the loss gains the distillation term.
    Returns the mean of each loss over the last 20 iterations and the seconds taken.
    """
    from uda_seg_core.train.loop import (
        DistInfo,
        build_discriminator_optimizer,
        build_segmentation_optimizer,
        resolve_device,
        to_device,
    )
    from uda_seg_core.train.schedules import poly_scheduler
    from uda_seg_core.train.supervised import source_loader, supervised_step

    if method not in ("supervised", "adversarial"):
        raise StructuredPruningError(f"unknown fine-tune method '{method}'; choose supervised or adversarial")
    if distill > 0 and (teacher is None or method != "supervised"):
        raise StructuredPruningError("distillation needs a teacher and the supervised fine-tune")
    dev = resolve_device(device)
    cfg = copy.deepcopy(cfg)
    if lr is not None:
        cfg.train.lr = float(lr)
    model.to(dev).train()
    dist = DistInfo()
    source = source_loader(cfg, dist)
    opt_g = build_segmentation_optimizer(model, cfg)
    schedulers = [poly_scheduler(opt_g, iters, cfg.train.poly_power)]
    if method == "adversarial":
        from uda_seg_core.train.adversarial import (
            adversarial_step,
            build_adversarial_discriminator,
            target_loader,
        )

        discriminator = build_adversarial_discriminator(cfg, dev)
        if discriminator_state is not None:
            discriminator.load_state_dict(discriminator_state)
        discriminator.train()
        opt_d = build_discriminator_optimizer(discriminator, cfg)
        schedulers.append(poly_scheduler(opt_d, iters, cfg.train.poly_power))
        target = target_loader(cfg, dist)

        def step() -> dict:
            return adversarial_step(model, discriminator, opt_g, opt_d, to_device(source.next(), dev),
                                    to_device(target.next(), dev), cfg)
    elif distill > 0:
        teacher = teacher.to(dev).eval()

        def step() -> dict:
            return distillation_step(model, teacher, opt_g, to_device(source.next(), dev), cfg, distill)
    else:
        def step() -> dict:
            return supervised_step(model, opt_g, to_device(source.next(), dev), cfg)

    history: list[dict] = []
    started = time.perf_counter()
    bar = range(iters)
    if progress:
        from tqdm import tqdm

        bar = tqdm(bar, desc=f"fine-tune ({method})", dynamic_ncols=True)
    for _ in bar:
        losses = step()
        for scheduler in schedulers:
            scheduler.step()
        history.append(losses)
        if progress and len(history) % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses.get(k, 0.0) for k in losses if k.startswith('dice')):.3f}")
    model.eval()
    tail = history[-20:]
    mean = {k: sum(h[k] for h in tail) / len(tail) for k in tail[0]} if tail else {}
    return {"method": method, "iters": iters, "lr": cfg.train.lr, "distill": distill,
            "seconds": time.perf_counter() - started, "final_losses": mean}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, cfg, batches: int, device: str = "auto",
                          with_target: bool = False) -> int:
    """Re-estimate every BatchNorm's running statistics on `batches` training batches.

    Removing channels changes what each following layer receives, so the stored means
    and variances no longer describe it and the pruned network's output collapses; fresh
    statistics (a cumulative average over the batches, no weight changes) bring much of
    it back before any fine-tune. The batches are source batches, alternating with
    unlabelled target batches when `with_target` (an adapted network saw both domains in
    training mode, so its statistics describe both). Returns the number of layers.
    """
    from uda_seg_core.data import DatasetFormatError
    from uda_seg_core.train.loop import DistInfo, resolve_device, to_device
    from uda_seg_core.train.supervised import source_loader

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if batches <= 0 or not norms:
        return 0
    dev = resolve_device(device)
    try:
        loaders = [source_loader(cfg, DistInfo())]
        if with_target:
            from uda_seg_core.train.adversarial import target_loader

            loaders.append(target_loader(cfg, DistInfo()))
    except DatasetFormatError as exc:
        raise DatasetFormatError(
            f"re-estimating BatchNorm statistics after pruning needs the training images: {exc}. Point "
            f"data.source_root / data.target_root at them, or pass --bn-batches 0 to skip"
        ) from exc
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.to(dev).train()
    try:
        for i in range(batches):
            batch = loaders[i % len(loaders)].next()
            model(to_device(batch, dev)["image"], aux_mode="train")  # aux heads' BNs too
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


def evaluate_on_target(model: nn.Module, cfg, device: str = "auto", split: str | None = None) -> dict:
    """mIoU of `model` on the target test split of `cfg` (the number the issue checks)."""
    from uda_seg_core.evaluate import evaluate_model
    from uda_seg_core.train.loop import build_eval_dataset, resolve_device

    dataset = build_eval_dataset(cfg, split or cfg.data.test_split)
    cm = evaluate_model(model, dataset, resolve_device(device))
    return cm.summary()


# --- command -----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained uda_seg checkpoint (.pt)")
    parser.add_argument("--ratio", type=float, default=0.5,
                        help="fraction of channels to remove (global: of all; layer: of each)")
    parser.add_argument("--scope", default="global", choices=SCOPES, help="how channels are ranked")
    parser.add_argument("--group-ratios", default=None,
                        help="with --scope group: name=ratio,... over spatial_path, context_path, arm, ffm, heads")
    parser.add_argument("--importance", default="l2", choices=IMPORTANCES, help="channel ranking criterion")
    parser.add_argument("--round-to", type=int, default=8, help="keep channel counts multiples of this (0 = off)")
    parser.add_argument("--max-layer-ratio", type=float, default=0.9,
                        help="global scope: no layer loses more than this fraction")
    parser.add_argument("--finetune-iters", type=int, default=0, help="fine-tune iterations after pruning")
    parser.add_argument("--finetune-method", default="auto", choices=FINETUNE_METHODS,
                        help="auto: adversarial when the checkpoint holds a discriminator, else supervised")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="initial learning rate of the fine-tune (default: train.lr / 10)")
    parser.add_argument("--bn-batches", type=int, default=25,
                        help="batches to re-estimate BatchNorm statistics on after pruning (0 = off); "
                             "source, plus target with the adversarial fine-tune method")
    parser.add_argument("--steps", type=int, default=1,
                        help="prune in this many steps, each followed by its share of the fine-tune")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="weight of distillation from the unpruned network during the supervised fine-tune")
    parser.add_argument("--evaluate", action="store_true",
                        help="report target-test mIoU before and after (pruned, fine-tuned)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", required=True, help="pruned checkpoint to write (.pt)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides for the fine-tune/evaluation, e.g. data.target_root=...")


def prune_checkpoint(checkpoint: str | Path, out: str | Path, *, ratio: float, scope: str = "global",
                     group_ratios: dict[str, float] | None = None, importance: str = "l2",
                     round_to: int | None = 8, max_layer_ratio: float = 0.9, finetune_iters: int = 0,
                     finetune_method: str = "auto", finetune_lr: float | None = None,
                     distill: float = 0.0, steps: int = 1, bn_batches: int = 25, evaluate: bool = False, device: str = "auto", overrides: Sequence[str] = (),
                     progress: bool = True) -> dict:
    """Load, prune, optionally fine-tune and evaluate, save; returns the summary (also written
    beside `out` as JSON)."""
    from uda_seg_core.config import from_dict, merge, parse_override
    from uda_seg_core.train.checkpoint import load_model, save_checkpoint

    model, ckpt = load_model(checkpoint)
    cfg = from_dict(ckpt["config"])
    for text in overrides:
        merge(cfg, parse_override(text))
    cfg.model.pretrained = ""
    size = tuple(cfg.inference.input_size)
    summary: dict = {"checkpoint": str(checkpoint), "out": str(out)}
    summary["before"] = complexity(model, size)
    if evaluate:
        summary["before"]["target_test"] = evaluate_on_target(model, cfg, device)
    model.cpu()
    teacher = copy.deepcopy(model) if distill > 0 and finetune_iters > 0 else None
    steps = max(1, int(steps))
    method = finetune_method
    disc_state = (ckpt.get("modules") or {}).get("discriminator")
    if method == "auto":
        method = "adversarial" if disc_state is not None and distill <= 0 else "supervised"
    lr = finetune_lr if finetune_lr is not None else cfg.train.lr / 10
    rounds = []
    for step in range(steps):
        # Each step removes the same fraction of what is left, so `steps` of them leave
        # (1 - ratio) of the channels, as one step of `ratio` would.
        pruning = prune_channels(model, step_fraction(ratio, steps), scope=scope,
                                 group_ratios={k: step_fraction(v, steps) for k, v in (group_ratios or {}).items()},
                                 importance=importance, round_to=round_to or None,
                                 max_layer_ratio=max_layer_ratio)
        if bn_batches > 0:
            recalibrate_batchnorm(model, cfg, bn_batches, device, with_target=method == "adversarial")
        if step == steps - 1:
            summary["after_pruning"] = complexity(model, size)
            if evaluate:
                summary["after_pruning"]["target_test"] = evaluate_on_target(model, cfg, device)
        iters = finetune_iters // steps + (1 if step < finetune_iters % steps else 0)
        if iters > 0:
            rounds.append(finetune(model, cfg, iters, method=method,
                                   discriminator_state=disc_state if method == "adversarial" else None,
                                   device=device, lr=lr, teacher=teacher, distill=distill, progress=progress))
    pruning.update(ratio=float(ratio), group_ratios=dict(group_ratios or {}), steps=steps,
                   bn_batches=int(bn_batches))
    if rounds:
        pruning["finetune"] = {**rounds[-1], "iters": sum(r["iters"] for r in rounds),
                               "seconds": sum(r["seconds"] for r in rounds), "steps": len(rounds)}
        if evaluate:
            summary["after_finetune"] = {"target_test": evaluate_on_target(model, cfg, device)}
    model.cpu().eval()
    pruning["macs_before"] = summary["before"]["macs"]
    pruning["macs_after"] = summary["after_pruning"]["macs"]
    pruning["params_before"] = summary["before"]["params"]
    pruning["params_after"] = summary["after_pruning"]["params"]
    pruning["source_checkpoint"] = str(checkpoint)
    cfg.optimise.structured_ratio = float(ratio)
    cfg.optimise.finetune_iters = int(finetune_iters)
    save_checkpoint(out, model, cfg, pruning=pruning)
    summary["pruning"] = pruning
    Path(out).with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _miou(part: dict | None) -> str:
    value = (part or {}).get("target_test", {}).get("miou")
    return "-" if value is None else f"{100 * value:.2f}"


def run(args: argparse.Namespace) -> int:
    import sys

    from uda_seg_core.config import ConfigError
    from uda_seg_core.data import DatasetFormatError
    from uda_seg_core.train.checkpoint import CheckpointError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = prune_checkpoint(
            args.checkpoint, args.out, ratio=args.ratio, scope=args.scope,
            group_ratios=parse_group_ratios(args.group_ratios), importance=args.importance,
            round_to=args.round_to, max_layer_ratio=args.max_layer_ratio, finetune_iters=args.finetune_iters,
            finetune_method=args.finetune_method, finetune_lr=args.finetune_lr, distill=args.distill,
            steps=args.steps, bn_batches=args.bn_batches, evaluate=args.evaluate,
            device=args.device, overrides=args.overrides,
        )
    except (StructuredPruningError, ConfigError, CheckpointError, DatasetFormatError) as exc:
        print(f"uda-seg prune-structured: {exc}", file=sys.stderr)
        return 2
    b, a = summary["before"], summary["after_pruning"]
    print(f"wrote {args.out} (summary: {Path(args.out).with_suffix('.json')})")
    print(f"parameters {b['params'] / 1e6:.2f} M -> {a['params'] / 1e6:.2f} M "
          f"({a['params'] / b['params']:.2f}x); MACs at {b['input_size'][0]}x{b['input_size'][1]} "
          f"{b['macs'] / 1e9:.2f} G -> {a['macs'] / 1e9:.2f} G ({a['macs'] / b['macs']:.2f}x)")
    if args.evaluate:
        print(f"target-test mIoU (%): before {_miou(b)}, pruned {_miou(a)}, "
              f"fine-tuned {_miou(summary.get('after_finetune'))}")
    return 0
