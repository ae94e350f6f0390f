"""Checkpoints that rebuild their model alone, written atomically, loaded as data.

A checkpoint holds the weights plus everything needed to use them: the model config,
class names, palette and input normalisation (and, for resumable training state, the
optimisers, schedules, RNG states and iteration). Writes go to a temporary file in the
same directory and are renamed over the target, so a crash mid-save leaves the previous
checkpoint intact. Loading uses `weights_only=True`: a checkpoint is data, never code.

Structured (channel) pruning changes layer widths; `load_model` rebuilds the default
architecture and reshapes every conv / norm / linear layer to the stored tensors, so a
pruned model loads without extra flags.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uda_seg_core.config import Config, ModelConfig, to_dict
from uda_seg_core.data.labels import CLASS_NAMES, PALETTE

FORMAT = "uda_seg.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the model asked for."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def model_payload(model: nn.Module, cfg: Config) -> dict:
    """The part of a checkpoint that serving needs: weights and how to use them."""
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    return {
        "format": FORMAT,
        "model_config": to_dict(cfg.model),
        "config": to_dict(cfg),
        "class_names": list(CLASS_NAMES[: cfg.model.num_classes]),
        "palette": PALETTE[: cfg.model.num_classes].tolist(),
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }


def save_checkpoint(path: str | Path, model: nn.Module, cfg: Config, **extra: Any) -> Path:
    """Write weights + metadata (+ any resumable state given in `extra`) atomically."""
    payload = model_payload(model, cfg)
    payload.update(extra)
    return atomic_save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint as data; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, wrong file type...
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a uda_seg checkpoint (expected a dict with format '{FORMAT}' "
            f"and a state_dict)"
        )
    return ckpt


def _reshaped_like(module: nn.Module, weight: torch.Tensor) -> nn.Module:
    """A fresh layer of the same kind as `module` whose shapes fit `weight`."""
    if isinstance(module, nn.Conv2d):
        out_c, in_per_group = weight.shape[:2]
        groups = module.groups
        if groups > 1 and groups == module.in_channels:  # depthwise stays depthwise
            groups = out_c
        new = nn.Conv2d(in_per_group * groups, out_c, module.kernel_size, module.stride,
                        module.padding, module.dilation, groups, module.bias is not None,
                        module.padding_mode)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = type(module)(weight.shape[0], module.eps, module.momentum, module.affine,
                           module.track_running_stats)
    elif isinstance(module, nn.Linear):
        new = nn.Linear(weight.shape[1], weight.shape[0], module.bias is not None)
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
    from uda_seg_core.models import build_segmentation_model

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
