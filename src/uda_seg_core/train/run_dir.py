"""The run directory of `uda-seg train|adapt`: its name, its files, and how a run starts.

    runs/<name>/   config.yaml   metrics.json   tb/   last.pt   best.pt

The name comes from the settings (IDDA2CamVid_bisenet-r18_fcd, ...) unless
`train.run_name` says otherwise; a directory that already holds a run is refused unless
the request resumes it or asks to overwrite it.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_core.checkpoint import CheckpointError
from uda_seg_core.config import Config, ConfigError, dump_config, load_config
from uda_seg_core.data import DatasetFormatError, resolve_format
from uda_seg_core.runtime import DistInfo, barrier

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
DATASET_NAMES = {"idda": "IDDA", "camvid": "CamVid", "camvid_segnet": "CamVid"}


@dataclass
class RunRequest:
    """What `uda-seg train|adapt` was asked for (the command line, as plain data)."""

    config: str | None = None  # experiment YAML
    overrides: Sequence[str] = field(default_factory=list)  # dotted KEY=VALUE
    resume: str | None = None  # a run directory to continue from its last.pt
    overwrite: bool = False  # start again in a directory that holds a run
    stop_at: int | None = None  # stop after this iteration (resumable)


def short_backbone(backbone: str) -> str:
    return backbone.replace("resnet", "r")


def dataset_name(fmt: str, root: str) -> str:
    """'IDDA' / 'CamVid' for a format; for an unresolved 'auto', read off the folder if it
    exists, else guessed from its name (data/synthetic/idda -> IDDA)."""
    if fmt == "auto":
        try:
            fmt = resolve_format(fmt, root)
        except DatasetFormatError:
            fmt = next((f for f in ("idda", "camvid") if f in Path(root).name.lower()), fmt)
    return DATASET_NAMES.get(fmt, fmt)


def derive_run_name(cfg: Config, command: str) -> str:
    """IDDA2CamVid_bisenet-r18_fcd, CamVid_bisenet-r101_supervised, ... from the settings."""
    if cfg.train.run_name:
        return cfg.train.run_name
    src = dataset_name(cfg.data.source_format, cfg.data.source_root)
    tgt = dataset_name(cfg.data.target_format, cfg.data.target_root)
    same_domain = (cfg.data.source_format, cfg.data.source_root) == (cfg.data.target_format,
                                                                      cfg.data.target_root)
    model = f"bisenet-{short_backbone(cfg.model.backbone)}"
    if command == "adapt":
        parts = [f"{src}2{tgt}", model, cfg.adapt.discriminator]
        if cfg.adapt.dropout > 0:
            parts.append(f"drop{cfg.adapt.dropout:g}")
        if cfg.adapt.prune != "none":
            parts.append(f"prune-{cfg.adapt.prune}")
    else:
        parts = [src if same_domain else f"{src}2{tgt}", model,
                 "supervised" if same_domain else "source-only"]
    if cfg.train.optimizer != "sgd":
        parts.append(cfg.train.optimizer)
    if cfg.train.seed != 0:
        parts.append(f"seed{cfg.train.seed}")
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", "_".join(parts))


def load_run_config(request: RunRequest) -> tuple[Config, Path | None]:
    """The config of a new run (--config + overrides) or of a resumed one (the run's own
    config.yaml + overrides)."""
    overrides = list(request.overrides or [])
    if request.resume:
        run_dir = Path(request.resume)
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"cannot resume {run_dir}: {path} not found (is it a run "
                                  f"directory written by uda-seg train/adapt?)")
        return load_config(path, overrides), run_dir
    return load_config(request.config, overrides), None


def prepare_run_dir(cfg: Config, command: str, resume_dir: Path | None, overwrite: bool,
                    dist: DistInfo) -> Path:
    if resume_dir is not None:
        return resume_dir
    run_dir = Path(cfg.train.out_dir) / derive_run_name(cfg, command)
    if (run_dir / CHECKPOINT_LAST).exists() and not overwrite:
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                          f"start again with --overwrite, or set train.run_name")
    barrier(dist)  # every rank has checked before rank 0 touches the folder
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT_LAST, CHECKPOINT_BEST, METRICS_FILE):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)  # old curves would mix with the new
        dump_config(cfg, run_dir / CONFIG_FILE)
    return run_dir
