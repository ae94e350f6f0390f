"""Checkpoints that rebuild their model alone, written atomically, loaded as data.

A checkpoint holds the weights plus everything needed to use them: the model config,
class names, palette, the label set they come from (`label_set`: headline classes, ignore
id, dataset maps; `labels.LabelSet.to_record`) and input normalisation (and, for resumable
training state, the optimisers, schedules, RNG states and iteration). Writes go to a
temporary file in the same directory and are renamed over the target, so a crash mid-save
leaves the previous checkpoint intact. Loading uses `weights_only=True`: a checkpoint is
data, never code.

This is the ground floor: it stores and reads data and builds no network. Rebuilding the
network a checkpoint describes (structured-pruned widths included) is
`uda_seg_core.models.load_model`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uda_seg_core.config import Config, from_dict, input_normalisation, to_dict
from uda_seg_core.labels import resolve_label_set
from uda_seg_core.reporting import atomic_output

FORMAT = "uda_seg.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not fit the model asked for."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file beside `path`, fsync, then rename over `path`
    (`reporting.atomic_output`)."""
    with atomic_output(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def model_payload(model: nn.Module, cfg: Config) -> dict:
    """The part of a checkpoint that serving needs: weights and how to use them."""
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    labels = resolve_label_set(cfg.data.label_set)
    return {
        "format": FORMAT,
        "model_config": to_dict(cfg.model),
        "config": to_dict(cfg),
        "class_names": list(labels.names[: cfg.model.num_classes]),
        "palette": labels.palette_array()[: cfg.model.num_classes].tolist(),
        "label_set": labels.to_record(),
        # the normalisation the weights expect (the backbone's unless the config set one)
        "mean": list(input_normalisation(cfg).mean),
        "std": list(input_normalisation(cfg).std),
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
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or "
                              f"save? use the file training wrote (runs/<name>/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, wrong file type...
        raise CheckpointError(f"cannot read checkpoint {path}: {_why_unreadable(exc)}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a uda_seg checkpoint (expected a dict with format '{FORMAT}' "
            f"and a state_dict)"
        )
    return ckpt


def _why_unreadable(exc: Exception) -> str:
    """One line for a torch.load failure (some carry no message, some a paragraph)."""
    if isinstance(exc, pickle.UnpicklingError):  # torch's advice to drop weights_only: no
        return ("not a PyTorch checkpoint, or one that holds code (refused: a checkpoint is "
                "loaded as data)")
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else f"{type(exc).__name__} (truncated?)"


def checkpoint_config(ckpt: dict) -> Config:
    """The Config a checkpoint was trained with (the defaults for one that stores none), with
    the normalisation its weights expect and its label set: what evaluating or fine-tuning
    it starts from."""
    cfg = from_dict(ckpt["config"]) if "config" in ckpt else Config()
    if isinstance(ckpt.get("label_set"), dict) and not resolve_label_set(
            ckpt["label_set"]).is_preset:
        cfg.data.label_set = ckpt["label_set"]  # the set itself: its YAML file may be gone
    cfg.data.mean = list(ckpt.get("mean", cfg.data.mean))
    cfg.data.std = list(ckpt.get("std", cfg.data.std))
    return cfg
