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
