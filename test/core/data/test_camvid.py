"""CamVid loaders: both published layouts, the 32-colour mapping, pairing errors, order."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from helpers.fixtures import (
    CAMVID_CLASS_DICT,
    expected_camvid_class,
    save_rgb,
    write_class_dict,
    write_tiny_camvid,
)
from uda_seg_core.config import IMAGENET, AugmentationConfig, DataConfig
from uda_seg_core.data import DatasetFormatError, build_dataset
from uda_seg_core.data.transforms import build_transforms


def all_colours_label() -> tuple[np.ndarray, np.ndarray]:
    """A 4x9 label holding each of the 32 CamVid colours, 3 unknown colours and Void."""
    colours = [c[1:] for c in CAMVID_CLASS_DICT] + [(1, 2, 3), (255, 255, 255), (10, 200, 30),
                                                    (0, 0, 0)]
    expected = [expected_camvid_class(c[0]) for c in CAMVID_CLASS_DICT] + [11, 11, 11, 11]
    return (np.array(colours, np.uint8).reshape(4, 9, 3),
            np.array(expected, np.uint8).reshape(4, 9))


def test_every_camvid_colour_lands_on_its_class(tmp_path, caplog):
    label, expected = all_colours_label()
    write_tiny_camvid(tmp_path, {"train": ["0001TP_006690", "0001TP_006720"]},
                      labels={"0001TP_006690": label, "0001TP_006720": label})
    ds = build_dataset("camvid", tmp_path, "train")
    with caplog.at_level(logging.WARNING):
        item = ds[0]
        ds[1]
    assert item["image"].dtype == np.uint8 and item["image"].shape == (4, 9, 3)
    assert item["label"].dtype == np.uint8
    np.testing.assert_array_equal(item["label"], expected)
    # Three unknown colours per frame: counted, and one warning naming the first file.
    assert ds.unknown_pixels == 6
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "0001TP_006690_L.png" in warnings[0].getMessage()
    assert "3 pixels" in warnings[0].getMessage()


@pytest.mark.parametrize("variant", ["class_11 column", "label_colors.txt", "built-in table"])
def test_colour_table_variants(tmp_path, variant):
    label, expected = all_colours_label()
    write_tiny_camvid(tmp_path, {"test": ["Seq05VD_f00000"]}, labels={"Seq05VD_f00000": label})
    if variant == "class_11 column":
        write_class_dict(tmp_path, extra_column=True)
    else:
        (tmp_path / "class_dict.csv").unlink()
    if variant == "label_colors.txt":
        (tmp_path / "label_colors.txt").write_text(
            "".join(f"{r} {g} {b}\t{n}\n" for n, r, g, b in CAMVID_CLASS_DICT))
    np.testing.assert_array_equal(build_dataset("camvid", tmp_path, "test")[0]["label"], expected)


def test_class_dict_errors_name_the_line(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["a"]})
    (tmp_path / "class_dict.csv").write_text("name,r,g,b\nRoad,128,64,notanumber\n")
    with pytest.raises(DatasetFormatError, match=r"class_dict.csv, line 2"):
        build_dataset("camvid", tmp_path, "train")


def test_names_in_sequence_then_frame_order_and_splits_combine(tmp_path):
    train = ["Seq05VD_f00030", "0016E5_07959", "0001TP_006720", "0006R0_f02400", "0001TP_006690"]
    write_tiny_camvid(tmp_path,
                      {"train": train, "val": ["0016E5_f900", "0016E5_f1000"], "test": ["x"]})
    ds = build_dataset("camvid", tmp_path, "train")
    assert ds.names == ["0001TP_006690", "0001TP_006720", "0006R0_f02400", "0016E5_07959",
                        "Seq05VD_f00030"]
    both = build_dataset("camvid", tmp_path, "train+val")
    assert len(both) == 7 and both.names.index("0016E5_f900") < both.names.index("0016E5_f1000")
    assert build_dataset("camvid", tmp_path, ["train", "val"]).names == both.names
    assert build_dataset("camvid", tmp_path, "train", limit=2).names == ds.names[:2]


def test_missing_and_extra_files_are_named(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["0001TP_006690", "0001TP_006720", "0001TP_006750"]})
    (tmp_path / "train_labels" / "0001TP_006720_L.png").unlink()
    save_rgb(tmp_path / "train_labels" / "0006R0_f00930_L.png", np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(DatasetFormatError) as err:
        build_dataset("camvid", tmp_path, "train")
    message = str(err.value)
    assert "0001TP_006720.png" in message and "no label" in message
    assert "0006R0_f00930_L.png" in message and "no image" in message
    assert "0001TP_006690" not in message


def test_label_without_L_suffix_is_named(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["a"]})
    (tmp_path / "train_labels" / "a_L.png").rename(tmp_path / "train_labels" / "a.png")
    with pytest.raises(DatasetFormatError, match=r"a\.png is not named <image name>_L\.png"):
        build_dataset("camvid", tmp_path, "train")


def test_size_mismatch_names_both_files(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["a"]})
    save_rgb(tmp_path / "train_labels" / "a_L.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"a_L\.png is 5x5 but image .*a\.png is 16x12"):
        build_dataset("camvid", tmp_path, "train")[0]


def test_segnet_layout_maps_every_value(tmp_path):
    # SegNet ids 0 Sky ... 11 Unlabelled, plus two values outside the table.
    label = np.array([[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 255]], np.uint8)
    expected = np.array([[9, 1, 3, 6, 7, 10, 8], [4, 2, 5, 0, 11, 11, 11]], np.uint8)
    write_tiny_camvid(tmp_path, {"test": ["0001TP_008550"], "train": ["0006R0_f01000"]},
                      labels={"0001TP_008550": label}, layout="segnet")
    ds = build_dataset("camvid_segnet", tmp_path, "test")
    np.testing.assert_array_equal(ds[0]["label"], expected)
    assert ds.unknown_pixels == 2
    assert len(build_dataset("camvid_segnet", tmp_path, ["train", "test"])) == 2


def test_wrong_layout_says_which_layout_it_looks_like(tmp_path):
    segnet, colour = tmp_path / "segnet", tmp_path / "colour"
    write_tiny_camvid(segnet, {"train": ["a"]}, layout="segnet")
    write_tiny_camvid(colour, {"train": ["a"]})
    with pytest.raises(DatasetFormatError, match="looks like the 'camvid_segnet' layout"):
        build_dataset("camvid", segnet, "train")
    with pytest.raises(DatasetFormatError, match="looks like the 'camvid' layout"):
        build_dataset("camvid_segnet", colour, "train")
    with pytest.raises(DatasetFormatError, match="unknown dataset format 'cityscapes'"):
        build_dataset("cityscapes", colour, "train")


def test_unlabelled_target_needs_no_labels(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["a", "b"]})
    for p in (tmp_path / "train_labels").iterdir():
        p.unlink()
    (tmp_path / "train_labels").rmdir()
    ds = build_dataset("camvid", tmp_path, "train", with_labels=False)
    item = ds[1]
    assert "label" not in item and item["name"] == "b" and item["image"].shape == (12, 16, 3)


def test_transform_gives_normalised_tensors(tmp_path):
    write_tiny_camvid(tmp_path, {"val": ["a"]}, size=(24, 32))
    data = DataConfig(crop_size=[16, 16], eval_size=[12, 16])
    tf = build_transforms(AugmentationConfig(), data, train=False, normalisation=IMAGENET)
    item = build_dataset("camvid", tmp_path, "val", transform=tf)[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 12, 16)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (24, 32)
    assert int(item["label"].max()) <= 11
