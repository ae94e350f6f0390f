"""What every dataset shares (data/base.py): sequence filters."""
from __future__ import annotations

import pytest

from helpers.fixtures import write_tiny_camvid
from uda_seg_core.data import DatasetFormatError, build_dataset


def test_sequences_keep_only_their_frames_and_name_what_exists(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["0001TP_1", "0006R0_1", "0006R0_2", "0016E5_1"]},
                      layout="segnet")
    held_out = build_dataset("auto", tmp_path, "train", sequences=["0006R0"])
    assert held_out.names == ["0006R0_1", "0006R0_2"]
    seen = build_dataset("auto", tmp_path, "train", sequences=["0001TP", "0016E5"], limit=1)
    assert seen.names == ["0001TP_1"]
    with pytest.raises(DatasetFormatError, match="Seq05VD.*holds: 0001TP, 0006R0, 0016E5"):
        build_dataset("auto", tmp_path, "train", sequences=["Seq05VD"])


def test_a_sequence_part_is_cut_in_time_order_and_parts_do_not_overlap(tmp_path):
    # frame numbers that sort wrongly as text: the parts must follow time, not spelling
    frames = [f"0001TP_{n}" for n in (9, 10, 11, 100, 8, 12)] + ["0016E5_1"]
    write_tiny_camvid(tmp_path, {"train": frames}, layout="segnet")
    first = build_dataset("auto", tmp_path, "train", sequences=["0001TP:1/2"]).names
    second = build_dataset("auto", tmp_path, "train", sequences=["0001TP:2/2"]).names
    assert sorted(first, key=lambda n: int(n.split("_")[1])) == [
        "0001TP_8", "0001TP_9", "0001TP_10"]
    assert set(second) == {"0001TP_11", "0001TP_12", "0001TP_100"}
    both = build_dataset("auto", tmp_path, "train", sequences=["0001TP:2/2", "0016E5"]).names
    assert set(both) == set(second) | {"0016E5_1"}
    for bad in ("0001TP:3/2", "0001TP:0/2", "0001TP:half", ":1/2"):
        with pytest.raises(DatasetFormatError, match="NAME:K/N"):
            build_dataset("auto", tmp_path, "train", sequences=[bad])
