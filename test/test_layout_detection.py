"""Dataset layouts read off the folder (`format: auto`), sequences, and a target without a
test split: the real-data entry points."""
from __future__ import annotations

import json
import shutil

import pytest

from helpers.fixtures import tiny_overrides, write_domains, write_idda, write_tiny_camvid
from uda_seg_core.cli import main
from uda_seg_core.data import DatasetFormatError, build_dataset, resolve_format


@pytest.mark.parametrize("layout", ["camvid", "camvid_segnet", "idda"])
def test_auto_reads_each_layout_off_the_folder(tmp_path, layout):
    """Bug guarded: `build_dataset('camvid', <SegNet folder>)` used to fail with 'use format
    camvid_segnet' although the loader knew the layout."""
    if layout == "camvid":
        write_tiny_camvid(tmp_path, {"val": ["0016E5_001", "0016E5_002"]})
    elif layout == "camvid_segnet":
        write_tiny_camvid(tmp_path, {"val": ["0016E5_001", "0016E5_002"]}, layout="segnet")
    else:
        write_idda(tmp_path, ["a", "b"])
    assert resolve_format("auto", tmp_path) == layout
    ds = build_dataset("auto", tmp_path, "all" if layout == "idda" else "val")
    assert len(ds) == 2 and int(ds[0]["label"].max()) <= 11
    assert resolve_format(layout, tmp_path) == layout  # an explicit format is still accepted


def test_ambiguous_and_unknown_folders_list_what_was_found(tmp_path):
    both = tmp_path / "both"
    write_tiny_camvid(both, {"train": ["a"]})
    write_tiny_camvid(both, {"val": ["b"]}, layout="segnet")
    with pytest.raises(DatasetFormatError, match="ambiguous.*camvid_segnet and camvid.*valannot/"):
        resolve_format("auto", both)
    other = tmp_path / "other"
    (other / "pictures").mkdir(parents=True)
    (other / "notes.txt").write_text("x")
    with pytest.raises(DatasetFormatError, match=r"cannot tell the layout.*notes\.txt, pictures/"):
        build_dataset("auto", other, "train")
    with pytest.raises(DatasetFormatError, match="unknown dataset format 'kitti'"):
        resolve_format("kitti", other)


def test_sequences_keep_only_their_frames_and_name_what_exists(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["0001TP_1", "0006R0_1", "0006R0_2", "0016E5_1"]},
                      layout="segnet")
    held_out = build_dataset("auto", tmp_path, "train", sequences=["0006R0"])
    assert held_out.names == ["0006R0_1", "0006R0_2"]
    seen = build_dataset("auto", tmp_path, "train", sequences=["0001TP", "0016E5"], limit=1)
    assert seen.names == ["0001TP_1"]
    with pytest.raises(DatasetFormatError, match="Seq05VD.*holds: 0001TP, 0006R0, 0016E5"):
        build_dataset("auto", tmp_path, "train", sequences=["Seq05VD"])


def test_target_without_test_split_trains_and_reports_val(tmp_path):
    """Bug guarded: a target with train/val only (CamVid with its test split withheld) used
    to train every iteration and then die with 'test not found for split test'."""
    idda, camvid = write_domains(tmp_path, n=2)
    shutil.rmtree(camvid / "test")
    shutil.rmtree(camvid / "test_labels")
    overrides = tiny_overrides(tmp_path, idda, camvid, **{"train.epochs": 1})
    assert main(["train", *overrides]) == 0
    metrics = json.loads((tmp_path / "runs" / "IDDA2CamVid_bisenet-r18_source-only"
                          / "metrics.json").read_text())
    assert "skipped" in metrics["test"] and "'test' split" in metrics["test"]["skipped"]
    assert metrics["best"]["miou"] is not None


def test_missing_val_split_is_found_before_anything_is_written(tmp_path, capsys):
    idda, camvid = write_domains(tmp_path, n=2)
    shutil.rmtree(camvid / "val")
    shutil.rmtree(camvid / "val_labels")
    assert main(["train", *tiny_overrides(tmp_path, idda, camvid)]) == 2
    assert "data.val_split='val' not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
