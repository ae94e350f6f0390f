"""`uda-seg train` end to end on tiny data, and the loop's pieces: schedule, optimisers,
run names, loaders that restart at any iteration."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from helpers.fixtures import tiny_overrides, write_domains
from uda_seg_core.cli import main
from uda_seg_core.config import Config, ConfigError, load_config
from uda_seg_core.models import BiSeNet, build_segmentation_model, load_model
from uda_seg_core.runtime import DistInfo
from uda_seg_core.train.loaders import LoaderCycle
from uda_seg_core.train.optim import build_segmentation_optimizer
from uda_seg_core.train.run_dir import derive_run_name
from uda_seg_core.train.schedules import poly_factor, poly_scheduler


def test_poly_decay_follows_the_paper_and_survives_a_checkpoint():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100) == 0.0
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.5e-2)
    sched = poly_scheduler(opt, max_iters=10)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-2 * 0.6**0.9)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    opt2 = torch.optim.SGD([param], lr=2.5e-2)
    sched2 = poly_scheduler(opt2, max_iters=999)  # replaced by the stored 10
    sched2.load_state_dict(torch.load(buffer, weights_only=True))
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(2.5e-2 * 0.5**0.9)


def test_segmentation_optimisers_of_table_iv():
    cfg = Config()
    cfg.model.backbone = "resnet18"
    model = build_segmentation_model(cfg.model)
    kinds = {}
    for name in ("sgd", "adam", "rmsprop"):
        cfg.train.optimizer = name
        opt = build_segmentation_optimizer(model, cfg)
        kinds[name] = type(opt).__name__
        decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
        assert decay == {"decay": 1e-4, "no_decay": 0.0}
    assert kinds == {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}
    cfg.train.optimizer = "lbfgs"
    with pytest.raises(ConfigError, match="train.optimizer"):
        build_segmentation_optimizer(model, cfg)


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


class Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"index": i}


def test_loader_restarts_at_any_iteration_and_shards_across_ranks():
    straight = LoaderCycle(Indices(7), batch_size=2, dist=DistInfo(), seed=3)
    assert straight.batches_per_epoch == 3
    straight.seek(0)
    sequence = [straight.next()["index"].tolist() for _ in range(8)]  # cycles past two epochs
    assert sequence[:3] != sequence[3:6], "each epoch should get its own permutation"
    for start in (1, 3, 5):
        resumed = LoaderCycle(Indices(7), batch_size=2, dist=DistInfo(), seed=3)
        resumed.seek(start)
        assert [resumed.next()["index"].tolist() for _ in range(8 - start)] == sequence[start:]
    shards = []
    for rank in (0, 1):
        cycle = LoaderCycle(Indices(8), batch_size=2, dist=DistInfo(rank, 2), seed=0)
        cycle.seek(0)
        shards.append([i for _ in range(2) for i in cycle.next()["index"].tolist()])
    assert sorted(shards[0] + shards[1]) == list(range(8))
    with pytest.raises(ConfigError, match="no full batch"):
        LoaderCycle(Indices(3), batch_size=4, dist=DistInfo(), seed=0)


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
