"""Dataset layouts read off the folder (`format: auto`, data/formats.py): each layout, and
ambiguous or unknown folders."""
from __future__ import annotations

import pytest

from helpers.fixtures import write_idda, write_tiny_camvid
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


