"""`uda-seg report`: the paper's tables rendered from runs' metrics.json files.

The metrics.json files here are written by the test in the format of the training loop
(fabricated values): these tests check the rendering, not the training.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from helpers.fixtures import bands, write_tiny_camvid
from uda_seg_core.config import Config, dump_config, load_config
from uda_seg_core.study.report import (
    build_report,
    discriminator_zeros,
    epoch_times,
    find_runs,
    write_report,
)

CLASSES = ["Bicyclist", "Building", "Car", "Column_Pole", "Fence", "Pedestrian", "Road", "Sidewalk",
           "SignSymbol", "Sky", "Tree", "Background"]


def fake_metrics(name: str, command: str, accuracy: float, miou: float,
                 epochs: list[float]) -> dict:
    per_class = {c: round(miou + 0.01 * i, 4) for i, c in enumerate(CLASSES)}
    per_class["Bicyclist"] = None  # absent from the test split: undefined, not zero
    per_epoch = 16
    return {
        "run": name, "command": command, "iteration": per_epoch * len(epochs),
        "max_iters": per_epoch * len(epochs),
        "iterations_per_epoch": per_epoch, "world_size": 1, "device": "cpu",
        "seconds_per_iteration": epochs[-1] / per_epoch, "seconds_per_epoch": epochs[-1],
        "training_time": "01:23",
        "epochs": [{"epoch": i + 1, "iteration": per_epoch * (i + 1), "train_seconds": t * 0.9,
                    "wall_seconds": t}
                   for i, t in enumerate(epochs)],
        "history": [], "best": None,
        "test": {"split": "test", "checkpoint": "best.pt", "accuracy": accuracy, "miou": miou,
                 "miou_12": miou - 0.01, "per_class_iou": per_class, "pixels": 1000},
    }


def write_run(root: Path, name: str, command: str, accuracy: float, miou: float,
              epochs: list[float] | None = None, **overrides: str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = load_config(None, [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()])
    cfg.train.run_name = name
    dump_config(cfg, run / "config.yaml")
    (run / "metrics.json").write_text(json.dumps(fake_metrics(name, command, accuracy, miou,
                                                              epochs or [12.0, 10.0, 10.0, 10.0])))
    return run


@pytest.fixture()
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "table1_upper_bound", "train", 0.812, 0.534, data__source_format="camvid",
              data__source_root="data/synthetic/camvid")
    write_run(root, "table1_fcd", "adapt", 0.701, 0.402)
    write_run(root, "table1_dwd", "adapt", 0.655, 0.351, adapt__discriminator="dwd")
    write_run(root, "table2_incremental_pruning", "adapt", 0.689, 0.399,
              [30.0, 20.0, 21.0, 19.0, 18.0, 17.0, 16.0, 15.0],
              adapt__prune="incremental", adapt__prune_rate=0.0625, train__epochs=8)
    write_run(root, "table3_aug4", "train", 0.777, 0.456, augmentation__hflip=0.0,
              augmentation__blur_sigma="[0.0, 3.0]", augmentation__linear_contrast="[0.75, 1.5]",
              augmentation__noise_std="[0.0, 12.75]", augmentation__multiply="[0.8, 1.2]")
    write_run(root, "table4_adam", "train", 0.6, 0.3, train__optimizer="adam", train__lr=0.001)
    plan = {"profile": "reduced", "seconds_before_report": 1800.0, "experiments": {
        "table1_upper_bound": {"command": "train", "run": "table1_upper_bound"},
        "table3_aug3": {"command": "train", "run": "table1_upper_bound",
                        "same_as": "table1_upper_bound"},
        "table1_fcd": {"command": "adapt", "run": "table1_fcd"},
    }}
    (root / "plan.json").write_text(json.dumps(plan))
    return root


def table(text: str, heading: str) -> list[list[str]]:
    """The rows of the first markdown table after `heading`, as lists of cells."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_table_i_shows_measured_and_paper_numbers_and_missing_rows(runs_dir):
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    rows = {r[0]: r for r in table(text, "## Table I")}
    assert rows["Upper Bound"][1:5] == ["0.812", "0.534", "10.0", "01:23"]
    assert rows["Upper Bound"][5:] == ["0.882", "0.675", "10:20"]  # the paper's, beside ours
    assert rows["BiSeNet+FCD"][1:3] == ["0.701", "0.402"]
    assert rows["BiSeNet+TFD"][1] == "not run" and rows["BiSeNet+TFD"][5] == "0.664"
    assert rows["BiSeNet+DWD"][2] == "0.351"
    assert "synthetic default" in text and "not CamVid numbers" in text
    assert "reduced" in text and "30.0 minutes" in text


def test_per_class_iou_marks_undefined_classes(runs_dir):
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    rows = {r[0]: r for r in table(text, "Per-class IoU")}
    assert rows["Upper Bound"][1] == "n/a"  # Bicyclist absent: not a zero IoU
    assert rows["Upper Bound"][2] == "0.54"


def test_table_ii_initial_and_final_epoch_times(runs_dir):
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    rows = {r[0]: r for r in table(text, "## Table II")}
    inc = rows["Incremental Pruning"]
    # epochs 2-8 (epoch 1 is warm-up): first quarter median 20.0, last quarter 15.0
    assert inc[1:6] == ["0.689", "0.399", "20.0", "15.0", "0.75"]
    assert inc[6] == "0.50"  # 0.0625 x 8 epochs
    assert inc[7] == "n/a"  # no last.pt to count zeros in
    assert inc[8:] == ["0.691", "0.371", "25:30", "19:00"]
    assert rows["Fixed Pruning"][1] == "not run"
    assert rows["Baseline (BiSeNet+FCD)"][1] == "0.701"


def test_table_iii_reads_the_augmentations_from_each_config_and_shared_runs(runs_dir):
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    rows = {r[0].split(" (=")[0]: r for r in table(text, "## Table III")}
    assert rows["Aug 4"][1:6] == ["x", "[0, 3]", "[0.75, 1.5]", "[0, 12.75], 0.5",
                                  "[0.8, 1.2], 0.5"]
    assert rows["Aug 4"][6:8] == ["0.777", "0.456"]
    # Aug 3 shares the upper bound's run (plan.json): its numbers, said so in the label
    aug3 = next(r for r in table(text, "## Table III") if r[0].startswith("Aug 3"))
    assert "table1_upper_bound" in aug3[0] and aug3[6:8] == ["0.812", "0.534"]
    assert aug3[1:3] == ["0.5", "[1, 2]"]
    assert rows["Baseline"][1:3] == ["x", "x"] and rows["Baseline"][6] == "not run"


def test_table_iv_and_all_runs(runs_dir):
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    rows = {r[0]: r for r in table(text, "## Table IV")}
    assert rows["ADAM"][1:5] == ["0.001", "0.600", "0.300", "0.733"]
    assert rows["SGD"][2] == "not run"
    all_rows = {r[0]: r for r in table(text, "## All runs")}
    assert set(all_rows) == {"table1_upper_bound", "table1_fcd", "table1_dwd",
                             "table2_incremental_pruning",
                             "table3_aug4", "table4_adam"}
    assert all_rows["table1_dwd"][3] == "dwd" and all_rows["table4_adam"][3] == "-"


def test_sweep_figures_are_linked_when_present(runs_dir):
    sweep = runs_dir / "table2_incremental_pruning" / "prune_sweep_test"
    sweep.mkdir()
    cv2.imwrite(str(sweep / "fig4_ptp_global.png"), np.zeros((10, 10, 3), np.uint8))
    doc = {"images": 40, "split": "test", "tolerance": 0.01,
           "baseline": {"accuracy": 0.7, "miou": 0.4},
           "max_sparsity_within_tolerance": {"module/arm": 0.3, "global/global": 0.45}, "rows": []}
    (sweep / "sweep.json").write_text(json.dumps(doc))
    text = build_report(runs_dir, runs_dir / "report.md", qualitative=False)
    assert "](table2_incremental_pruning/prune_sweep_test/fig4_ptp_global.png)" in text
    assert "fig3_ptp_modules.png" not in text  # not written, not linked
    rows = {r[0]: r for r in table(text, "Largest sparsity")}
    assert rows["global"][1] == "0.45" and rows["arm"][1] == "0.30"


def test_epoch_times_of_short_runs():
    assert epoch_times({"epochs": []}) == (None, None)
    assert epoch_times({"epochs": [{"wall_seconds": 5.0}, {"wall_seconds": 4.0}]}) == (5.0, 4.0)


def test_discriminator_zeros_counts_d_weights_in_last_pt(tmp_path):
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.models import build_discriminator, build_segmentation_model
    from uda_seg_core.pruning import dense_state_dict, prune_global

    cfg = Config()
    d = build_discriminator("fcd", 12, width=8)
    prune_global(d, 0.3)
    save_checkpoint(tmp_path / "last.pt", build_segmentation_model(cfg.model), cfg,
                    modules={"discriminator": dense_state_dict(d)})
    assert discriminator_zeros(tmp_path) == pytest.approx(0.3, abs=1e-3)
    assert discriminator_zeros(tmp_path / "missing") is None


def test_qualitative_figure_from_checkpoints(tmp_path):
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.models import build_segmentation_model

    data = write_tiny_camvid(tmp_path / "camvid", {"test": ["f0", "f1", "f2"]}, size=(64, 96),
                             frames=bands([(128, 128, 128), (128, 64, 128)]))  # Sky, Road
    root = tmp_path / "runs"
    for name in ("source_only", "table1_fcd", "table2_incremental_pruning"):
        run = write_run(root, name, "adapt", 0.5, 0.3, data__target_root=str(data))
        torch.manual_seed(len(name))
        cfg = load_config(run / "config.yaml")
        save_checkpoint(run / "best.pt", build_segmentation_model(cfg.model), cfg)
    out = write_report(root, tmp_path / "out" / "report.md", examples=2, device="cpu")
    text = out.read_text()
    assert "![Fig. 5](figures/fig5_qualitative.png)" in text
    assert "sparsity 0.40" in text  # no sweep: the paper's 40 %
    image = cv2.imread(str(tmp_path / "out" / "figures" / "fig5_qualitative.png"))
    assert image is not None and image.shape[1] > image.shape[0]  # 5 columns, 2 rows


def test_runs_found_without_a_plan(tmp_path):
    write_run(tmp_path, "my_own_run", "adapt", 0.5, 0.25)
    runs = find_runs(tmp_path)
    assert list(runs) == ["my_own_run"] and runs["my_own_run"].finished
    saved = yaml.safe_load((tmp_path / "my_own_run" / "config.yaml").read_text())
    assert saved["train"]["run_name"] == "my_own_run"


def test_cli_missing_folder(tmp_path, capsys):
    from uda_seg_core.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "runs folder not found" in capsys.readouterr().err
