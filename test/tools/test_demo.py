"""`make demo` orchestration: the summary table, settings, the deploy stage's reuse, and
--camvid checked before any work (stage reuse itself: test/core/test_stages.py).

The demo itself trains networks for minutes; `make demo` is its end-to-end check. These
tests cover the logic that decides what a rerun redoes and what the table says.
"""
from __future__ import annotations

import json

import pytest

from uda_seg_core.stages import Stages
from uda_seg_tools.demo import build_parser, summary_table
from uda_seg_tools.demo_settings import DemoSettings


def test_summary_table_has_offline_and_live_rows_with_latency_and_drops():
    offline = {"source only": {"miou": 0.2512, "accuracy": 0.6, "images": 20},
               "adapted": {"miou": 0.2734, "accuracy": 0.65, "images": 20}}
    live = {"paced": {"miou": 0.2734, "accuracy": 0.65, "frames_matched": 20, "frames_labelled": 20,
                      "node": {"fps": 14.2, "counters": {"dropped": 0},
                               "stages": {"node": {"count": 20, "p50": 61.04, "p99": 80.0},
                                          "end_to_end": {"count": 20, "p50": 65.0, "p99": 90.0}}}}}
    table = summary_table(offline, live, served="adapted")
    lines = table.splitlines()
    assert len(lines) == 2 + 2 + 1
    assert "| offline: source only | 25.12 |" in table
    assert "| offline: adapted (served) | 27.34 |" in table
    assert "| live: paced | 27.34 | 65.00 | 20/20 | 0 | 14.2 | 61.0 / 80.0 | 65.0 / 90.0 |" in table
    json.dumps(live)  # the same structure goes to summary.json


def test_defaults_parse_and_size_is_h_by_w():
    args = build_parser().parse_args(["--size", "90x120", "--iters", "5", "--no-realtime"])
    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k != "fresh"})
    assert settings.hw == (90, 120) and settings.iters == 5 and settings.realtime is False


def test_the_deploy_stage_writes_model_onnx_for_the_node_and_is_reused(trained_model, tmp_path):
    """Stage 5 runs `uda-seg deploy` on the adapted model (tiny settings, real CamVid-format
    frames given as --camvid) and serves its model.onnx; a second demo run reuses it.
    Mutant: the deploy stage's outputs or settings left out of its stamp (redone every run),
    or the node pointed at the adapted checkpoint instead of model.onnx."""
    from uda_seg_tools.demo import DEPLOYED, DemoRun, Progress, deploy_stage

    s = DemoSettings(out=str(tmp_path), size="48x64", camvid=str(trained_model.camvid),
                     deploy_ratios="0.5", finetune_iters=1, calibration_frames=2, bn_batches=2,
                     deploy_repeats=3)

    def run() -> tuple[DemoRun, dict]:
        d = DemoRun(s, tmp_path, Progress(), Stages(tmp_path, fresh=False),
                    {"adapted (FCD)": trained_model.checkpoint}, split="test")
        return d, deploy_stage(d)

    d, doc = run()
    model = tmp_path / "deploy" / "model.onnx"
    assert d.checkpoints[DEPLOYED] == model and model.is_file()
    assert doc["settings"]["input_size"] == [48, 64]
    assert {c["ratio"] for c in doc["candidates"]} == {0.0, 0.5}
    stamp = (tmp_path / "deploy" / "deploy.json").stat().st_mtime_ns
    d, again = run()
    assert (tmp_path / "deploy" / "deploy.json").stat().st_mtime_ns == stamp
    assert again["chosen"] == doc["chosen"]


def test_a_camvid_folder_without_the_needed_splits_is_refused_before_any_work(tmp_path):
    """Mutant: --camvid checked only when training reaches it (minutes of work first)."""
    from uda_seg_tools.demo import run_demo
    from uda_seg_tools.demo_processes import DemoError

    camvid = tmp_path / "camvid"
    for split in ("train", "train_labels"):
        (camvid / split).mkdir(parents=True)
    out = tmp_path / "out"
    with pytest.raises(DemoError, match="--camvid"):
        run_demo(DemoSettings(out=str(out), camvid=str(camvid)))
    assert not out.exists()


def test_camvid_and_deploy_settings_parse():
    args = build_parser().parse_args(["--camvid", "/data/CamVid", "--camvid-split", "val",
                                      "--deploy-ratios", "0.3", "--max-loss", "0.5"])
    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k != "fresh"})
    assert settings.camvid == "/data/CamVid" and settings.camvid_split == "val"
    assert settings.deploy_ratios == "0.3" and settings.max_loss == 0.5
    assert settings.serve == "deployed"
