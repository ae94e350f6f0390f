"""IDDA loader: RGBA labels with the id in red, all 27 ids, classes_info.json, splits, errors."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from helpers.fixtures import CLASSES, write_idda, write_tiny_camvid
from uda_seg_core.data import DatasetFormatError, build_dataset

# DESIGN.md: IDDA id -> class; every other id (and any value >= 27) is Background.
IDDA_NAMED = {1: "Building", 2: "Fence", 4: "Pedestrian", 5: "Column_Pole", 6: "Road", 7: "Road",
              8: "Sidewalk", 9: "Tree", 10: "Car", 12: "SignSymbol", 16: "Bicyclist", 20: "Sky",
              24: "Building"}


def all_ids_label() -> tuple[np.ndarray, np.ndarray]:
    ids = np.array(list(range(27)) + [27, 100, 255], np.uint8).reshape(3, 10)
    expected = np.array([CLASSES.index(IDDA_NAMED.get(int(i), "Background")) for i in ids.ravel()],
                        np.uint8).reshape(3, 10)
    return ids, expected


@pytest.mark.parametrize("alpha", [True, False], ids=["RGBA", "RGB"])
def test_every_idda_id_lands_on_its_class(tmp_path, caplog, alpha):
    ids, expected = all_ids_label()
    write_idda(tmp_path, ["@277323.612@Town10@ClearNoon@audi@", "b"],
               ids={"@277323.612@Town10@ClearNoon@audi@": ids},
               alpha=alpha)
    ds = build_dataset("idda", tmp_path, "all")
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["name"] == "@277323.612@Town10@ClearNoon@audi@"
    assert item["image"].shape == (3, 10, 3) and item["image"].dtype == np.uint8
    np.testing.assert_array_equal(item["label"], expected)
    assert ds.unknown_pixels == 3
    assert any("@277323.612@Town10@ClearNoon@audi@.png" in r.getMessage() for r in caplog.records)


CLASSES_INFO = """{
  "classes":27,
  "label2camvid":[[0, 255], [1, 1], [2, 4], [3, 255], [4, 5], [5, 3], [6, 6], [7, 6], [8, 7],
    [9, 10], [10, 2], [11, 255], [12, 8], [13, 255], [14, 255], [15, 255], [16,  0], [17, 255],
    [18, 255], [19, 255], [20, 9], [21, 255], [22, 255], [23, 255], [24, 1], [25, 255], [26, 255]],
  "label":["unlabeled", "building", "fence", "other", "pedestrian", "pole", "roadline", "road",
    "sidewalk", "vegetation", "car", "wall", "tsign", "tlight", "guardrail", "dynamic", "bicycle",
    "motorcycle", "rider", "terrain", "sky", "railtrack", "ground", "statics", "bridge", "water",
    "truck"],
}
"""


def test_classes_info_json_as_released_is_accepted(tmp_path, caplog):
    write_idda(tmp_path, ["a"])
    (tmp_path / "classes_info.json").write_text(CLASSES_INFO)  # note the trailing comma
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("idda", tmp_path, "train")
    assert ds.classes_info["classes"] == 27 and not caplog.records


def test_classes_info_disagreement_is_reported(tmp_path, caplog):
    write_idda(tmp_path, ["a"])
    info = json.loads(CLASSES_INFO.replace("],\n}", "]\n}"))
    info["label2camvid"][11] = [11, 1]  # wall -> Building: not the paper's mapping
    (tmp_path / "classes_info.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING):
        build_dataset("idda", tmp_path, "all")
    assert "ids [11]" in caplog.text


def test_broken_classes_info_names_the_file(tmp_path):
    write_idda(tmp_path, ["a"])
    (tmp_path / "classes_info.json").write_text("{ not json")
    with pytest.raises(DatasetFormatError, match="classes_info.json is not valid JSON"):
        build_dataset("idda", tmp_path, "all")


def test_unpaired_files_are_named(tmp_path):
    write_idda(tmp_path, ["s1", "s2", "s3"])
    (tmp_path / "labels" / "s2.png").unlink()
    (tmp_path / "rgb" / "s3.jpg").unlink()
    with pytest.raises(DatasetFormatError) as err:
        build_dataset("idda", tmp_path, "all")
    message = str(err.value)
    assert "s2.jpg" in message and "s3.png" in message and "s1" not in message


def test_split_lists(tmp_path):
    write_idda(tmp_path, [f"f{i}" for i in range(6)])
    assert build_dataset("idda", tmp_path, "train").names == [f"f{i}" for i in range(6)]
    (tmp_path / "train.txt").write_text("f0\nf2.jpg\nrgb/f4.jpg\n")
    (tmp_path / "val.txt").write_text("# held out\nf5\n")
    assert build_dataset("idda", tmp_path, "train").names == ["f0", "f2", "f4"]
    assert build_dataset("idda", tmp_path, "train+val").names == ["f0", "f2", "f4", "f5"]
    assert len(build_dataset("idda", tmp_path, "all")) == 6
    with pytest.raises(DatasetFormatError, match=r"test\.txt"):
        build_dataset("idda", tmp_path, "test")
    (tmp_path / "val.txt").write_text("f5\nf9\n")
    with pytest.raises(DatasetFormatError, match=r"val\.txt lists 1 stem.*f9"):
        build_dataset("idda", tmp_path, "val")


def test_not_an_idda_folder_says_what_it_is(tmp_path):
    write_tiny_camvid(tmp_path, {"train": ["a"]})
    with pytest.raises(DatasetFormatError, match="looks like the 'camvid' layout"):
        build_dataset("idda", tmp_path, "all")
