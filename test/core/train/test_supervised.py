"""`uda-seg train` end to end on tiny data (train/supervised.py's Trainer), the source-only
baseline, and `train.init_from`. The loop's pieces have their own files: test_schedules.py,
test_optim.py, test_run_dir.py, test_loaders.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.fixtures import tiny_overrides, write_domains
from uda_seg_core.cli import main
from uda_seg_core.config import load_config
from uda_seg_core.models import BiSeNet, load_model


def test_train_command_writes_a_complete_run(tmp_path, capsys):
    idda, camvid = write_domains(tmp_path)
    # The upper bound: labelled domain = the target's own train split.
    overrides = tiny_overrides(tmp_path, idda, camvid, **{"data.source_format": "camvid",
                                                          "data.source_root": str(camvid)})
    assert main(["train", *overrides]) == 0
    run_dir = tmp_path / "runs" / "CamVid_bisenet-r18_supervised"
    assert {"config.yaml", "metrics.json", "last.pt", "best.pt",
            "tb"} <= {p.name for p in run_dir.iterdir()}
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iteration"] == metrics["max_iters"] == 4
    assert [h["iteration"] for h in metrics["history"]] == [2, 4]  # validation once per epoch
    assert metrics["best"]["iteration"] in (2, 4)
    assert metrics["test"]["split"] == "test" and 0 <= metrics["test"]["miou"] <= 1
    assert len(metrics["test"]["per_class_iou"]) == 12
    assert metrics["seconds_per_iteration"] > 0 and metrics["seconds_per_epoch"] > 0
    assert "mIoU (named classes)" in capsys.readouterr().out
    model, ckpt = load_model(run_dir / "best.pt")
    assert isinstance(model, BiSeNet) and ckpt["iteration"] == metrics["best"]["iteration"]
    # The resolved config (defaults + overrides) is what a resume starts from.
    resolved = load_config(run_dir / "config.yaml")
    assert resolved.data.source_root == str(camvid) and resolved.data.crop_size == [48, 64]

    # A second run into the same directory must be asked for explicitly.
    assert main(["train", *overrides]) == 2
    assert "--resume" in capsys.readouterr().err


def test_source_only_baseline_trains_on_the_source_domain(tmp_path):
    idda, camvid = write_domains(tmp_path, n=2)
    overrides = tiny_overrides(tmp_path, idda, camvid, **{"train.epochs": 1, "train.val_every": 1})
    assert main(["train", *overrides]) == 0
    run_dir = Path(tmp_path / "runs" / "IDDA2CamVid_bisenet-r18_source-only")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["iterations_per_epoch"] == 1 and len(metrics["history"]) == 1


def test_init_from_starts_from_a_checkpoint_and_refuses_what_does_not_fit(tmp_path, capsys):
    """train.init_from: the second stage (adapt after source-only training) starts from the
    checkpoint's weights. Bugs guarded: weights silently left at random init; a checkpoint
    of another architecture half-loaded; a missing file found after the run dir exists."""
    from uda_seg_core.checkpoint import CheckpointError, save_checkpoint
    from uda_seg_core.models import build_segmentation_model
    from uda_seg_core.train.supervised import build_model

    cfg = load_config(None, ["model.backbone=resnet18"])
    torch.manual_seed(1)
    first = build_segmentation_model(cfg.model)
    path = save_checkpoint(tmp_path / "stage1.pt", first, cfg)
    cfg.train.init_from = str(path)
    torch.manual_seed(2)
    second = build_model(cfg, torch.device("cpu"))
    for key, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[key], value), key
    other = load_config(None, ["model.backbone=resnet18", "model.num_classes=5"])
    wrong = save_checkpoint(tmp_path / "five.pt", build_segmentation_model(other.model), other)
    cfg.train.init_from = str(wrong)
    with pytest.raises(CheckpointError, match="do not fit this network"):
        build_model(cfg, torch.device("cpu"))

    idda, camvid = write_domains(tmp_path, n=2)
    overrides = tiny_overrides(tmp_path, idda, camvid,
                               **{"train.init_from": str(tmp_path / "missing.pt")})
    assert main(["adapt", *overrides]) == 2
    assert "train.init_from: checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
