"""Run names from the settings (train/run_dir.py)."""
from __future__ import annotations

from uda_seg_core.config import Config
from uda_seg_core.train.run_dir import derive_run_name


def test_run_names_come_from_the_settings():
    cfg = Config()
    assert derive_run_name(cfg, "adapt") == "IDDA2CamVid_bisenet-r18_fcd"
    cfg.adapt.discriminator, cfg.adapt.prune, cfg.train.seed = "dwd", "incremental", 2
    assert derive_run_name(cfg, "adapt") == "IDDA2CamVid_bisenet-r18_dwd_prune-incremental_seed2"
    cfg = Config()
    assert derive_run_name(cfg, "train") == "IDDA2CamVid_bisenet-r18_source-only"
    cfg.data.source_format, cfg.data.source_root = cfg.data.target_format, cfg.data.target_root
    cfg.model.backbone = "resnet101"
    assert derive_run_name(cfg, "train") == "CamVid_bisenet-r101_supervised"
    cfg.train.run_name = "mine"
    assert derive_run_name(cfg, "train") == "mine"
