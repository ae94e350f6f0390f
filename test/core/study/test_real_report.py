"""The real-data study's arithmetic on a fixed set of records with known numbers (no training):
paired differences against source only, the share of the gap closed, the daytime column,
per-class changes, D's accuracy from a metrics history, and the report's cells."""
from __future__ import annotations

from dataclasses import replace

import pytest

from uda_seg_core.study.real_report import aggregate, discriminator_accuracy, report_markdown
from uda_seg_core.study.real_rows import DAY_DUSK_ROWS, PAIRS


def record(method: str, seed: int, val: float, dusk: float, classes=None) -> dict:
    per_class = classes or {"Road": val, "Sky": dusk}
    return {"method": method, "seed": seed, "command": "adapt",
            "val": {"miou": val, "per_class_iou": per_class},
            "dusk": {"miou": dusk, "per_class_iou": per_class}}


VAL = {"source_only": [0.40, 0.42, 0.44], "fcd": [0.41, 0.40, 0.45],
       "minent": [0.39, 0.41, 0.43], "st1": [0.38, 0.41, 0.44]}
DUSK = {"source_only": [0.20, 0.22, 0.24], "fcd": [0.25, 0.24, 0.30],
        "minent": [0.20, 0.22, 0.24], "st1": [0.30, 0.32, 0.34]}


@pytest.fixture
def records() -> dict:
    runs = {f"{m}_s{s}": record(m, s, VAL[m][s], DUSK[m][s]) for m in VAL for s in range(3)}
    runs["upper_bound_dusk_s0"] = record("upper_bound_dusk", 0, 0.50, 0.42)
    # a second round on two seeds only: paired over those two
    runs["st2_s0"] = record("st2", 0, 0.40, 0.26)
    runs["st2_s2"] = record("st2", 2, 0.44, 0.30)
    runs["fcd_s1"]["discriminator"] = {"d_acc_source": 0.6, "d_acc_target": 0.7}
    runs["fcd_s2"]["discriminator"] = {"d_acc_source": 0.8, "d_acc_target": 0.5}
    for s, ratio in ((0, 0.002), (1, 0.004)):
        runs[f"fcd_s{s}"]["gradient"] = {"lambda_adv": 0.001, "ratio": ratio, "cosine": 0.0}
    return runs


def test_gap_share_of_a_row_on_fewer_seeds_pairs_its_gain_with_its_own_seeds(records):
    """Guards the bug where a row run on seed 0 only was compared with source only's mean
    over all seeds: its gain then counted the source-only networks' seed spread."""
    records["source_only_s2"]["dusk"]["miou"] = 0.36  # source only 0.20, 0.22, 0.36
    records["one_seed_s0"] = record("one_seed", 0, 0.40, 0.30)  # +0.10 over its seed
    rows_spec = [*DAY_DUSK_ROWS, replace(DAY_DUSK_ROWS[0], name="one_seed", label="one seed")]
    rows = aggregate(records, rows_spec, ["val", "dusk"], "dusk", "upper_bound_dusk")
    gap = 0.42 - (0.20 + 0.22 + 0.36) / 3
    assert rows["one_seed"]["gap_closed"] == pytest.approx(0.10 / gap)


def test_paired_differences_gap_share_and_the_daytime_column(records):
    rows = aggregate(records, DAY_DUSK_ROWS, ["val", "dusk"], "dusk", "upper_bound_dusk")
    assert list(rows) == ["upper_bound_dusk", "source_only", "fcd", "minent", "st1", "st2"]
    fcd = rows["fcd"]["vs_source_only"]["dusk"]
    assert fcd["values"] == pytest.approx([0.05, 0.02, 0.06]) and fcd["seeds"] == [0, 1, 2]
    assert fcd["mean"] == pytest.approx(0.13 / 3)
    assert fcd["std"] == pytest.approx(0.0208167, abs=1e-6)  # sample standard deviation
    st2 = rows["st2"]["vs_source_only"]["dusk"]
    assert st2["seeds"] == [0, 2] and st2["values"] == pytest.approx([0.06, 0.06])
    # gap = upper bound 0.42 - source only 0.22 (mean of 3 seeds) = 0.20
    assert rows["fcd"]["gap_closed"] == pytest.approx((0.79 / 3 - 0.22) / 0.20)
    assert rows["st1"]["gap_closed"] == pytest.approx(0.5)
    assert rows["minent"]["gap_closed"] == pytest.approx(0.0)
    assert rows["st2"]["gap_closed"] == pytest.approx((0.28 - 0.22) / 0.20)
    assert "gap_closed" not in rows["source_only"] and "gap_closed" not in rows["upper_bound_dusk"]
    # val: fcd +0.0 -> keeps; minent exactly 1.0 point below -> keeps; st1 -1.0 average of
    # (-2, -1, 0) -> keeps; a row 1.2 points below does not
    assert rows["fcd"]["keeps_day"] and rows["minent"]["keeps_day"] and rows["st1"]["keeps_day"]
    records["st1_s1"]["val"]["miou"] = 0.404  # diffs -2, -1.6, 0: mean -1.2 points
    again = aggregate(records, DAY_DUSK_ROWS, ["val", "dusk"], "dusk", "upper_bound_dusk")
    assert again["st1"]["keeps_day"] is False
    assert "keeps_day" not in rows["source_only"]
    assert rows["source_only"]["dusk"]["mean"] == pytest.approx(0.22)
    assert rows["source_only"]["dusk"]["std"] == pytest.approx(0.02)


def test_per_class_changes_and_discriminator_means(records):
    rows = aggregate(records, DAY_DUSK_ROWS, ["val", "dusk"], "dusk", "upper_bound_dusk")
    change = rows["fcd"]["per_class_change"]["dusk"]
    # Road holds the val figure, Sky the dusk one (record()): mean over seeds of the change
    assert change["Road"] == pytest.approx(0.0) and change["Sky"] == pytest.approx(0.13 / 3)
    records["fcd_s0"]["dusk"]["per_class_iou"]["Sky"] = None  # undefined in one seed
    again = aggregate(records, DAY_DUSK_ROWS, ["val", "dusk"], "dusk", "upper_bound_dusk")
    assert again["fcd"]["per_class_change"]["dusk"]["Sky"] == pytest.approx(0.04)
    assert rows["fcd"]["discriminator"] == pytest.approx({"d_acc_source": 0.7,
                                                          "d_acc_target": 0.6})
    assert rows["fcd"]["gradient"]["ratio"] == pytest.approx(0.003)
    assert "discriminator" not in rows["st1"]


def test_discriminator_accuracy_is_the_mean_of_the_last_logged_intervals():
    history = [{"iteration": i, "miou": 0.1, "train_losses": {"d_acc_source": a,
                                                              "d_acc_target": b}}
               for i, a, b in ((250, 0.5, 0.5), (500, 0.6, 0.9), (750, 0.8, 0.7))]
    d = discriminator_accuracy({"history": [{"iteration": 100, "miou": 0.0}, *history]})
    assert d["d_acc_source"] == pytest.approx(0.7) and d["d_acc_target"] == pytest.approx(0.8)
    assert d["iterations"] == [500, 750]
    assert discriminator_accuracy({"history": [{"iteration": 5, "train_losses": {"seg": 1}}]}) \
        is None


def test_report_cells(records):
    rows = aggregate(records, DAY_DUSK_ROWS, ["val", "dusk"], "dusk", "upper_bound_dusk")
    summary = {"pair": "day-dusk", "description": "test", "upper_bound": "upper_bound_dusk",
               "val_side": PAIRS["day-dusk"].val_side,
               "evaluations": [{"key": "val", "title": "val (0016E5, day)"},
                               {"key": "dusk", "title": "dusk eval (0001TP:2/2)"}],
               "rows": rows, "runs": records}
    report = report_markdown(summary)
    assert "| 22.0 ± 2.0 (20.0, 22.0, 24.0) |" in report  # source only, dusk
    assert "| +4.3 ± 2.1 (+5.0, +2.0, +6.0) |" in report  # fcd - source only, dusk
    assert "| +6.0 ± 0.0 (+6.0, +6.0) |" in report  # st2, two seeds
    line = next(x for x in report.splitlines() if x.startswith("| st1 |"))
    assert "| 50% |" in line and line.rstrip().endswith("| yes |")
    assert "| 0.700 | 0.600 | 0.001 | 0.0030 |" in report  # fcd's discriminator row
    assert "Per-class IoU change against source only, dusk eval (0001TP:2/2)" in report
    assert "keeps daytime accuracy (val ≥ source only - 1.0)" in report


def test_the_val_column_of_the_simulator_pair_does_not_claim_daytime(records):
    """On sim-real val (0016E5) is a real, target-side drive: the column that day-dusk names
    "keeps daytime accuracy" says there only whether adapting cost val accuracy."""
    rows = aggregate(records, DAY_DUSK_ROWS, ["val"])
    summary = {"pair": "sim-real", "description": "test",
               "val_side": PAIRS["sim-real"].val_side,
               "evaluations": [{"key": "val", "title": "val (0016E5)"}],
               "rows": rows, "runs": records}
    report = report_markdown(summary)
    assert "keeps daytime accuracy" not in report
    assert "val not below source only (≥ source only - 1.0)" in report
