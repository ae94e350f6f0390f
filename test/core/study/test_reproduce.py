"""`uda-seg reproduce` (study/reproduce.py): the reduced profile, data roots, planning,
resuming and skipping (the experiment files themselves: test_experiments.py)."""
from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from helpers import ROOT
from uda_seg_core.config import dump_config
from uda_seg_core.study.experiments import (
    EXPERIMENTS,
)
from uda_seg_core.study.reproduce import config_key, plan_runs, resolve_config, run_state

FOLDER = ROOT / "config" / "experiments"
NAMES = [e.name for e in EXPERIMENTS]


def plan_args(out: Path, profile: str = "reduced", **extra) -> Namespace:
    return Namespace(**{"out": str(out), "profile": profile, "only": None, "source_root": None,
                        "target_root": None, "device": None, "overrides": [], "experiments": FOLDER,
                        "skip_sweep": False, "skip_report": False, "dry_run": True, **extra})


def test_reduced_profile_keeps_what_makes_each_row(tmp_path):
    cfg = resolve_config("table2_incremental_pruning_dropout", "reduced", FOLDER, tmp_path)
    assert (cfg.model.backbone, cfg.model.pretrained, cfg.train.epochs) == ("resnet18", "", 8)
    assert cfg.data.crop_size == [120, 160]
    assert (cfg.adapt.prune, cfg.adapt.dropout) == ("incremental", 0.01)
    # the paper's final sparsity
    assert cfg.adapt.prune_rate * cfg.train.epochs == pytest.approx(0.5)
    assert (cfg.train.out_dir, cfg.train.run_name) == (str(tmp_path),
                                                       "table2_incremental_pruning_dropout")
    assert resolve_config("table4_adam", "reduced", FOLDER, tmp_path).train.lr == 1e-3


def test_data_roots_go_to_the_right_domain(tmp_path):
    ub = resolve_config("table1_upper_bound", "paper", FOLDER, tmp_path, source_root="data/IDDA",
                        target_root="data/CamVid")
    assert (ub.data.source_root, ub.data.target_root) == ("data/CamVid", "data/CamVid")
    fcd = resolve_config("table1_fcd", "paper", FOLDER, tmp_path, source_root="data/IDDA",
                         target_root="data/CamVid", overrides=["train.device=cuda"])
    assert (fcd.data.source_root, fcd.data.target_root,
            fcd.train.device) == ("data/IDDA", "data/CamVid", "cuda")


def test_rows_with_the_same_resolved_config_share_one_run(tmp_path):
    plan, runs = plan_runs(plan_args(tmp_path))
    exps = plan["experiments"]
    assert exps["table3_aug3"]["same_as"] == "table1_upper_bound"
    # reduced: same backbone and epochs
    assert exps["table4_sgd"]["same_as"] == "table1_upper_bound"
    assert len(runs) == len(NAMES) - 2
    plan, runs = plan_runs(plan_args(tmp_path, profile="paper"))
    assert plan["experiments"]["table3_aug3"]["same_as"] == "table1_upper_bound"
    assert "same_as" not in plan["experiments"]["table4_sgd"]  # ResNet-18, 50 epochs: its own run


def test_run_state_skips_finished_resumes_stopped_and_restarts_changed(tmp_path):
    cfg = resolve_config("table1_fcd", "reduced", FOLDER, tmp_path)
    run = tmp_path / "table1_fcd"
    assert run_state(run, cfg) == "new"
    run.mkdir()
    dump_config(cfg, run / "config.yaml")
    (run / "last.pt").write_bytes(b"")
    (run / "metrics.json").write_text(json.dumps({"iteration": 64, "max_iters": 128, "test": None}))
    assert run_state(run, cfg) == "resume"
    (run / "metrics.json").write_text(json.dumps({"iteration": 128, "max_iters": 128,
                                                  "test": {"miou": 0.1}}))
    assert run_state(run, cfg) == "done"
    other = resolve_config("table1_fcd", "reduced", FOLDER, tmp_path, overrides=["train.epochs=9"])
    assert run_state(run, other) == "changed"
    assert config_key("adapt", cfg) != config_key("adapt", other)


def test_unknown_experiment_is_an_error(tmp_path):
    from uda_seg_core.config import ConfigError

    with pytest.raises(ConfigError, match="unknown experiment"):
        plan_runs(plan_args(tmp_path, only=["table9"]))


def test_reproduce_end_to_end_on_tiny_data_then_skips_what_is_done(tmp_path, monkeypatch, capsys):
    """Two rows, the sweep and the report on tiny data; a second call trains nothing."""
    from helpers.fixtures import write_domains
    from uda_seg_core.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the subprocesses: no spinning thread pools
    idda, camvid = write_domains(tmp_path / "data", n=4)
    out = tmp_path / "out"
    argv = ["reproduce", "--out", str(out), "--only", "table1_fcd", "table2_incremental_pruning",
            "--source-root", str(idda), "--target-root", str(camvid), "--device", "cpu", "--set",
            "data.crop_size=[48,64]", "data.eval_size=[]", "train.batch_size=2", "train.epochs=2",
            "adapt.d_width=8", "optimise.sparsities=[0.0,0.5]", "adapt.prune_rate=0.25"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "2 training runs" in first and "(wall clock)" in first and "of CPU time" in first
    for name in ("table1_fcd", "table2_incremental_pruning"):
        doc = json.loads((out / name / "metrics.json").read_text())
        assert doc["test"]["accuracy"] is not None and doc["iteration"] == doc["max_iters"]
    sweep = out / "table2_incremental_pruning" / "prune_sweep_test"
    assert (sweep / "fig3_ptp_modules.png").is_file() and (sweep / "fig4_ptp_global.png").is_file()
    report = (out / "report.md").read_text()
    assert "fig5_qualitative.png" in report and "BiSeNet+FCD | 0." in report
    plan = json.loads((out / "plan.json").read_text())
    assert plan["total_seconds"] > 0 and plan["cpu_seconds"] > 0
    assert plan["experiments"]["table1_fcd"]["state"] == "done"

    sweep_time = (sweep / "sweep.json").stat().st_mtime
    assert main([*argv, "--skip-report"]) == 0
    second = capsys.readouterr().out
    assert second.count("finished earlier, skipped") == 2
    assert (sweep / "sweep.json").stat().st_mtime == sweep_time  # not swept again
