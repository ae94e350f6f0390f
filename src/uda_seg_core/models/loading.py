"""Rebuild the segmentation network a checkpoint describes, structured-pruned widths included.

    model, ckpt = load_model("runs/x/best.pt")               # BiSeNet with the stored weights

Structured (channel) pruning changes layer widths; `load_model` builds the default
architecture from the stored model config and reshapes every conv / norm / linear layer
to the stored tensors, so a pruned model loads without extra flags.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from uda_seg_core.checkpoint import CheckpointError, load_checkpoint
from uda_seg_core.config import ModelConfig
from uda_seg_core.models.bisenet import build_segmentation_model


def _reshaped_like(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    """A copy of `module` whose shapes fit `weight` (values follow from load_state_dict).

    A copy, not a fresh layer: subclasses keep what their constructor would not know (timm's
    BatchNormAct2d keeps its ReLU6 or its absent activation)."""
    new = copy.deepcopy(module)
    if isinstance(module, nn.Conv2d):
        out_c, in_per_group = weight.shape[:2]
        groups = module.groups
        if groups > 1 and groups == module.in_channels:  # depthwise stays depthwise
            groups = out_c
        new.in_channels, new.out_channels, new.groups = in_per_group * groups, out_c, groups
        new.weight = nn.Parameter(torch.empty_like(weight))
        if module.bias is not None:
            new.bias = nn.Parameter(torch.empty(out_c, dtype=weight.dtype))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        n = weight.shape[0]
        new.num_features = n
        if module.affine:
            new.weight = nn.Parameter(torch.empty(n, dtype=weight.dtype))
            new.bias = nn.Parameter(torch.empty(n, dtype=weight.dtype))
        if module.track_running_stats:
            new.running_mean = torch.zeros(n)
            new.running_var = torch.ones(n)
    elif isinstance(module, nn.Linear):
        new.in_features, new.out_features = weight.shape[1], weight.shape[0]
        new.weight = nn.Parameter(torch.empty_like(weight))
        if module.bias is not None:
            new.bias = nn.Parameter(torch.empty(weight.shape[0], dtype=weight.dtype))
    else:
        raise CheckpointError(f"cannot reshape a {type(module).__name__} to {tuple(weight.shape)}")
    return new


def fit_to_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Replace layers whose stored weight has another shape (structured pruning)."""
    for name, module in list(model.named_modules()):
        key = f"{name}.weight" if name else "weight"
        weight = state_dict.get(key)
        current = getattr(module, "weight", None)
        if weight is None or current is None or not isinstance(current, torch.Tensor):
            continue
        if tuple(weight.shape) == tuple(current.shape):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _reshaped_like(module, weight))
    return model


def build_model_from_checkpoint(ckpt: dict, path: str | Path = "<checkpoint>") -> nn.Module:
    """Rebuild the segmentation network stored in `ckpt` and load its weights strictly."""
    model_cfg = ModelConfig(**ckpt["model_config"])
    model_cfg.pretrained = ""  # the checkpoint carries the weights
    model = build_segmentation_model(model_cfg)
    state = ckpt["state_dict"]
    fit_to_state_dict(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit a BiSeNet-{model_cfg.backbone} with "
            f"{model_cfg.num_classes} classes: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    return model


def load_model(path: str | Path, expect: ModelConfig | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load (model, checkpoint) from `path`; if `expect` is given, the backbone and class
    count must match it, and a mismatch names both."""
    ckpt = load_checkpoint(path, map_location)
    stored = ckpt["model_config"]
    if expect is not None:
        for key in ("backbone", "num_classes"):
            if stored.get(key) != getattr(expect, key):
                raise CheckpointError(
                    f"{path}: checkpoint has {key}={stored.get(key)!r} but the config asks for "
                    f"{key}={getattr(expect, key)!r}; pass the matching model.{key} or another "
                    f"checkpoint"
                )
    return build_model_from_checkpoint(ckpt, path), ckpt


def init_from_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Copy a checkpoint's weights into `model` (a freshly built network of the same
    backbone and classes): the start of a second training stage. A structured-pruned
    checkpoint, or one of another architecture, is refused with both shapes named."""
    ckpt = load_checkpoint(path)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"train.init_from={path}: its weights do not fit this network ({first}); it must be "
            f"an unpruned checkpoint with model.backbone={ckpt['model_config'].get('backbone')!r}"
            f" and num_classes={ckpt['model_config'].get('num_classes')!r} like this run's"
        ) from None
    return model
