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
fine-tune's data (source; source and target for the adversarial method; target alone for
'target-distill'; no weights change)
with `train.batchnorm`: the stored statistics no longer describe the thinner layers' inputs,
and without this the pruned network's output collapses (mIoU 33.6 -> 3.4 % at ratio 0.3
on the synthetic target; 14.4 % with fresh statistics, before any fine-tune).

`--steps K` prunes iteratively: K rounds, each removing the same share of the channels
left and followed by N/K fine-tune iterations (gentler than one cut when N > 0).

The optional fine-tune (`--finetune-iters N`) trains the pruned network for N iterations
on the checkpoint's data config (dotted overrides after the flags change it) with the
training engineer's step functions: 'supervised' (source labels, eq. 4), 'adversarial'
(eqs. 1-5, D restored from the checkpoint when it holds one, else a fresh D), or
'target-distill' (the unpruned network's softmax on unlabelled target frames is the only
target: no labels, no source data; `uda-seg deploy` uses it), the supervised one optionally
plus `--distill W`: W x the pixel-mean KL divergence from the unpruned network's softmax
to the pruned one's on the source batch (the unpruned network is the teacher, frozen),
which recovers the pruned network faster than labels alone. The result
is an ordinary checkpoint: `load_model` rebuilds the pruned widths from the stored
tensors, so `Segmenter`, `uda-seg export` and the ROS node load it without extra flags.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

from uda_seg_core.checkpoint import save_checkpoint
from uda_seg_core.config import Config, OptimiseConfig, from_dict, merge, parse_override
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.models import count_macs, count_parameters, load_model
from uda_seg_core.runtime import resolve_device
from uda_seg_core.train.batchnorm import recalibrate_batchnorm
from uda_seg_core.train.finetune import FINETUNE_METHODS, finetune
from uda_seg_core.train.loaders import target_split

SCOPES = ("global", "layer", "group")
IMPORTANCES = ("l2", "l1", "bn")
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
        layers = [m for m in model.modules()
                  if isinstance(m, nn.Conv2d) and m.out_channels == num_classes]
    if not layers:
        raise StructuredPruningError(f"found no classifier layer with {num_classes} outputs to "
                                     f"protect")
    return layers


def _importance(kind: str):
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "bn":  # BN scale factors (network slimming)
        return tp.importance.BNScaleImportance()
    raise StructuredPruningError(f"unknown importance '{kind}'; choose from: "
                                 f"{', '.join(IMPORTANCES)}")


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


def prune_channels(model: nn.Module, ratio: float, *, scope: str = "global",
                   group_ratios: dict[str, float] | None = None, importance: str = "l2",
                   round_to: int | None = 8, max_layer_ratio: float = 0.9,
                   trace_size: Sequence[int] = TRACE_SIZE) -> dict:
    """Remove channels from `model` in place; returns what was done (for the checkpoint).

    The graph is traced in 'train' output mode so the auxiliary heads, which hang off the
    context path, are shrunk together with the features they read. Tracing needs
    autograd, so this must not run under torch.no_grad().
    """
    ratio = _check_ratio(ratio)
    if scope not in SCOPES:
        raise StructuredPruningError(f"unknown scope '{scope}'; choose from: {', '.join(SCOPES)}")
    group_ratios = dict(group_ratios or {})
    ratio_dict = {}
    if scope == "group":
        groups = model.module_groups()
        unknown = sorted(set(group_ratios) - set(groups))
        if unknown:
            raise StructuredPruningError(f"unknown module group(s) {unknown}; the model has: "
                                         f"{', '.join(groups)}")
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
            model, torch.zeros(1, 3, *trace_size, device=device),
            importance=_importance(importance), global_pruning=scope == "global",
            pruning_ratio=ratio, pruning_ratio_dict=ratio_dict or None,
            max_pruning_ratio=max_layer_ratio, ignored_layers=classifier_layers(model),
            round_to=round_to,
        )
        pruner.step()
    finally:
        model.aux_mode = aux_mode
        model.train(was_training)
    return {"method": "structured-channel", "tool": f"torch-pruning {tp.__version__}",
            "ratio": ratio, "scope": scope, "group_ratios": group_ratios,
            "importance": importance, "round_to": round_to, "max_layer_ratio": max_layer_ratio}


def step_fraction(ratio: float, steps: int) -> float:
    """The fraction to remove at each of `steps` steps so that (1 - ratio) remains."""
    return 1.0 - (1.0 - ratio) ** (1.0 / steps)


def complexity(model: nn.Module, size: Sequence[int]) -> dict:
    """Parameters and eval-mode multiply-accumulates at input (1, 3, H, W)."""
    return {"params": count_parameters(model), "macs": count_macs(model, (1, 3, *size)),
            "input_size": list(size)}


def evaluate_on_target(model: nn.Module, cfg: Config, device: str = "auto",
                       split: str | None = None) -> dict:
    """mIoU of `model` on the target test split of `cfg` (the number the issue checks)."""
    dataset = target_split(cfg, split or cfg.data.test_split)
    return evaluate_model(model, dataset, resolve_device(device)).summary()


@dataclass
class StructuredPruning:
    """One `uda-seg prune-structured` request (the flags, as plain data)."""

    ratio: float | None = None  # fraction of channels removed; None: optimise.structured_ratio
    scope: str = "global"
    group_ratios: dict[str, float] = field(default_factory=dict)
    importance: str = "l2"
    round_to: int | None = 8
    max_layer_ratio: float = 0.9
    finetune_iters: int | None = None  # None: optimise.finetune_iters
    finetune_method: str = "auto"  # auto: adversarial when the checkpoint holds a D
    finetune_lr: float | None = None  # None: train.lr / 10
    distill: float = 0.0
    # target-distill only: the student sees the frames resized by (H, W) factors < 1, the
    # teacher at their size (resolution distillation for a smaller input size)
    student_scale: Sequence[float] = (1.0, 1.0)
    steps: int = 1
    bn_batches: int = 25
    evaluate: bool = False
    device: str = "auto"
    overrides: Sequence[str] = ()  # dotted config overrides for the fine-tune/evaluation


def request_config(ckpt: dict, request: StructuredPruning) -> Config:
    """The checkpoint's config with the request's overrides; the structured-pruning settings
    start from the defaults (the checkpoint's own record how *it* was made), then the
    request's ratio and fine-tune iterations where it gives them."""
    cfg = from_dict(ckpt["config"])
    defaults = OptimiseConfig()
    cfg.optimise.structured_ratio = defaults.structured_ratio
    cfg.optimise.finetune_iters = defaults.finetune_iters
    for text in request.overrides:
        merge(cfg, parse_override(text))
    cfg.model.pretrained = ""
    if request.ratio is not None:
        cfg.optimise.structured_ratio = float(request.ratio)
    if request.finetune_iters is not None:
        cfg.optimise.finetune_iters = int(request.finetune_iters)
    return cfg


def _prune_in_steps(model: nn.Module, cfg: Config, r: StructuredPruning, method: str,
                    disc_state: dict | None, summary: dict, progress: bool) -> dict:
    """`r.steps` rounds of cut -> BatchNorm re-estimation -> share of the fine-tune."""
    ratio, total_iters = cfg.optimise.structured_ratio, cfg.optimise.finetune_iters
    steps, size = max(1, int(r.steps)), tuple(cfg.inference.input_size)
    distilled = r.distill > 0 or method == "target-distill"
    teacher = copy.deepcopy(model).eval() if distilled and total_iters > 0 else None
    lr = r.finetune_lr if r.finetune_lr is not None else cfg.train.lr / 10
    rounds = []
    for step in range(steps):
        # Each step removes the same fraction of what is left, so `steps` of them leave
        # (1 - ratio) of the channels, as one step of `ratio` would.
        if ratio > 0 or r.group_ratios:
            pruning = prune_channels(
                model, step_fraction(ratio, steps), scope=r.scope, importance=r.importance,
                group_ratios={k: step_fraction(v, steps) for k, v in r.group_ratios.items()},
                round_to=r.round_to or None, max_layer_ratio=r.max_layer_ratio)
        else:  # no channel removed: the fine-tune alone (deploy's distilled unpruned network)
            pruning = {"method": "none", "scope": r.scope}
        if r.bn_batches > 0:
            recalibrate_batchnorm(model, cfg, r.bn_batches, r.device,
                                  with_target=method in ("adversarial", "target-distill"),
                                  source=method != "target-distill")
        if step == steps - 1:
            summary["after_pruning"] = complexity(model, size)
            if r.evaluate:
                summary["after_pruning"]["target_test"] = evaluate_on_target(model, cfg, r.device)
        iters = total_iters // steps + (1 if step < total_iters % steps else 0)
        if iters > 0:
            rounds.append(finetune(
                model, cfg, iters, method=method, device=r.device, lr=lr, teacher=teacher,
                discriminator_state=disc_state if method == "adversarial" else None,
                distill=r.distill, student_scale=tuple(r.student_scale), progress=progress))
    pruning.update(ratio=float(ratio), group_ratios=dict(r.group_ratios), steps=steps,
                   bn_batches=int(r.bn_batches))
    if rounds:
        pruning["finetune"] = {**rounds[-1], "iters": sum(x["iters"] for x in rounds),
                               "seconds": sum(x["seconds"] for x in rounds), "steps": len(rounds)}
    return pruning


def prune_checkpoint(checkpoint: str | Path, out: str | Path, *, progress: bool = True,
                     **request) -> dict:
    """Load, prune, optionally fine-tune and evaluate, save; returns the summary (also written
    beside `out` as JSON). The keyword arguments are the fields of `StructuredPruning`."""
    r = StructuredPruning(**request)
    model, ckpt = load_model(checkpoint)
    cfg = request_config(ckpt, r)
    summary: dict = {"checkpoint": str(checkpoint), "out": str(out)}
    summary["before"] = complexity(model, tuple(cfg.inference.input_size))
    if r.evaluate:
        summary["before"]["target_test"] = evaluate_on_target(model, cfg, r.device)
    model.cpu()
    disc_state = (ckpt.get("modules") or {}).get("discriminator")
    method = r.finetune_method
    if method == "auto":
        method = "adversarial" if disc_state is not None and r.distill <= 0 else "supervised"
    if method not in FINETUNE_METHODS:
        raise StructuredPruningError(f"unknown fine-tune method '{method}'; choose auto, "
                                     f"{' or '.join(FINETUNE_METHODS)}")
    pruning = _prune_in_steps(model, cfg, r, method, disc_state, summary, progress)
    if "finetune" in pruning and r.evaluate:
        summary["after_finetune"] = {"target_test": evaluate_on_target(model, cfg, r.device)}
    model.cpu().eval()
    for key in ("macs", "params"):
        pruning[f"{key}_before"] = summary["before"][key]
        pruning[f"{key}_after"] = summary["after_pruning"][key]
    pruning["source_checkpoint"] = str(checkpoint)
    save_checkpoint(out, model, cfg, pruning=pruning)
    summary["pruning"] = pruning
    Path(out).with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary
