"""Every entry of every mapping table lands on the paper's 12 classes; label sets (the
camvid12 preset, a user's YAML, records) map each dataset format, and a bad set is one
error naming its file and key."""
import json

import numpy as np
import pytest

from uda_seg_core import labels as L


def test_twelve_classes_in_the_papers_order():
    assert L.CLASS_NAMES == (
        "Bicyclist", "Building", "Car", "Column_Pole", "Fence", "Pedestrian",
        "Road", "Sidewalk", "SignSymbol", "Sky", "Tree", "Background",
    )
    assert L.NUM_CLASSES == 12 and L.BACKGROUND == 11
    assert L.IGNORE_INDEX not in range(L.NUM_CLASSES)
    assert len({tuple(c) for c in L.PALETTE}) == 12  # colours are distinct


def test_camvid_has_32_colours_and_21_collapse_to_background():
    assert len(L.CAMVID_COLOURS) == 32
    assert len(set(L.CAMVID_COLOURS.values())) == 32
    named = {n: c for n, c in L.CAMVID_NAME_TO_CLASS.items() if c != L.BACKGROUND}
    assert len(named) == 11
    assert sum(c == L.BACKGROUND for c in L.CAMVID_NAME_TO_CLASS.values()) == 21


@pytest.mark.parametrize("name", sorted(L.CAMVID_COLOURS))
def test_each_camvid_colour_maps_to_its_class(name):
    rgb = np.array(L.CAMVID_COLOURS[name], dtype=np.uint8).reshape(1, 1, 3)
    ids, unknown = L.camvid_rgb_to_ids(np.tile(rgb, (2, 3, 1)))
    expected = L.CLASS_NAMES.index(name) if name in L.CLASS_NAMES else L.BACKGROUND
    assert unknown == 0
    assert (ids == expected).all()


def test_named_camvid_colours_are_the_palette():
    for cls, name in enumerate(L.CLASS_NAMES[:11]):
        assert tuple(L.PALETTE[cls]) == L.CAMVID_COLOURS[name]


def test_unknown_colour_is_background_and_counted():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (1, 2, 3)
    img[1, 1] = (250, 250, 250)
    ids, unknown = L.camvid_rgb_to_ids(img)
    assert unknown == 2
    assert (ids == L.BACKGROUND).all()
    with pytest.raises(ValueError, match="RGB"):
        L.camvid_rgb_to_ids(np.zeros((2, 2), np.uint8))


def test_segnet_remap():
    names = ["Sky", "Building", "Column_Pole", "Road", "Sidewalk", "Tree", "SignSymbol",
             "Fence", "Car", "Pedestrian", "Bicyclist"]
    ids, unknown = L.segnet_to_ids(np.arange(13, dtype=np.uint8))
    assert [L.CLASS_NAMES[i] for i in ids[:11]] == names
    assert ids[11] == L.BACKGROUND and ids[12] == L.BACKGROUND
    assert unknown == 1  # 12 is not a SegNet index


IDDA_EXPECTED = {
    1: "Building", 2: "Fence", 4: "Pedestrian", 5: "Column_Pole", 6: "Road", 7: "Road",
    8: "Sidewalk", 9: "Tree", 10: "Car", 12: "SignSymbol", 16: "Bicyclist", 20: "Sky",
    24: "Building",
}


@pytest.mark.parametrize("idda_id", range(27))
def test_each_idda_id_maps_to_its_class(idda_id):
    ids, unknown = L.idda_to_ids(np.full((2, 2), idda_id, np.uint8))
    assert unknown == 0
    expected = L.CLASS_NAMES.index(IDDA_EXPECTED.get(idda_id, "Background"))
    assert (ids == expected).all()


def test_idda_out_of_range_ids_are_counted():
    ids, unknown = L.idda_to_ids(np.array([[27, 200], [7, 0]], np.uint8))
    assert unknown == 2
    assert ids.tolist() == [[L.BACKGROUND, L.BACKGROUND], [6, L.BACKGROUND]]
    assert len(L.IDDA_ID_NAMES) == 27


def test_palette_round_trip():
    ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = L.ids_to_rgb(ids)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert (L.rgb_to_ids(rgb) == ids).all()
    assert (L.ids_to_rgb(np.array([[255]], np.uint8)) == 0).all()


# ----------------------------------------------------------------------------- label sets

def test_the_camvid12_preset_is_the_papers_tables():
    """The default set is today's constants: names, colours, headline classes 0-10, and
    every map gives what the fixed functions give, for all 256 values (SegNet, IDDA) and
    for all 32 CamVid colours plus colours outside the table."""
    labels = L.resolve_label_set()
    assert labels is L.camvid12() and labels.is_preset and labels.name == "camvid12"
    assert labels.names == L.CLASS_NAMES and labels.headline == L.NAMED_CLASSES
    assert np.array_equal(labels.palette_array(), L.PALETTE) and labels.ignore_index == 255
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for fmt, fixed in (("camvid_segnet", L.segnet_to_ids), ("idda", L.idda_to_ids)):
        ids, unknown = L.map_index_label(every, labels.label_map(fmt).index_tables())
        expected, expected_unknown = fixed(every)
        assert np.array_equal(ids, expected) and unknown == expected_unknown, fmt
    table = {rgb: labels.label_map("camvid").class_of_name(name)
             for name, rgb in L.CAMVID_COLOURS.items()}
    assert table == L.camvid_colour_to_class()
    colours = np.array([*L.CAMVID_COLOURS.values(), (1, 2, 3), (250, 250, 250)], np.uint8)
    rgb = colours[np.arange(34).reshape(2, 17)]
    ids, unknown = L.map_colour_label(rgb, L.colour_tables(table, L.BACKGROUND))
    expected, expected_unknown = L.camvid_rgb_to_ids(rgb)
    assert np.array_equal(ids, expected) and unknown == expected_unknown == 2
    folder, known = labels.label_map("folder").index_tables()
    assert folder[:12].tolist() == list(range(12)) and (folder[12:] == 255).all()
    assert known[:12].all() and known[255] and not known[12:255].any()


LANES = """\
names: [road, car, other]
palette: [[128, 64, 128], [64, 0, 128], [20, 20, 20]]
headline: [road, car]
maps:
  folder:
    classes: {road: [1, 2], car: 3, other: [7]}
    ignore: [0]
    unknown: other
  idda:
    classes: {road: [6, 7], car: [10]}
  camvid:
    classes: {road: [Road, LaneMkgsDriv], car: [Car]}
    unknown: other
"""


def write_set(tmp_path, text: str, name: str = "lanes.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_yaml_set_maps_each_format_and_round_trips_as_a_record(tmp_path):
    labels = L.load_label_set(write_set(tmp_path, LANES))
    assert labels.name == "lanes" and labels.names == ("road", "car", "other")
    assert labels.headline == (0, 1) and labels.num_classes == 3 and not labels.is_preset
    values = np.array([[0, 1, 2, 3], [7, 9, 255, 3]], np.uint8)
    ids, unknown = L.map_index_label(values, labels.label_map("folder").index_tables())
    # 0 is listed as ignored, 255 is the set's ignore id, 9 is unlisted -> other (counted)
    assert ids.tolist() == [[255, 0, 0, 1], [2, 2, 255, 1]] and unknown == 1
    ids, unknown = L.map_index_label(values, labels.label_map("idda").index_tables())
    assert ids.tolist() == [[255] * 4, [0, 255, 255, 255]] and unknown == 6  # default: ignore
    camvid = labels.label_map("camvid")
    assert [camvid.class_of_name(n) for n in ("road", "LaneMkgsDriv", "Car", "Sky")] == [0, 0, 1, 2]
    with pytest.raises(L.LabelSetError,
                       match=r"no map for the 'camvid_segnet'.*maps\.camvid_segnet"):
        labels.label_map("camvid_segnet")
    record = json.loads(json.dumps(labels.to_record()))  # what checkpoints and metadata carry
    assert record["headline"] == ["road", "car"] and record["names"] == list(labels.names)
    assert L.resolve_label_set(record) == labels
    assert L.resolve_label_set(L.camvid12().to_record()) is L.camvid12()


def test_the_folder_map_defaults_to_the_identity():
    labels = L.parse_label_set({"names": ["a", "b"], "palette": [[0, 0, 0], [9, 9, 9]]}, "x")
    ids, unknown = L.map_index_label(np.array([0, 1, 2, 255], np.uint8),
                                     labels.label_map("folder").index_tables())
    assert ids.tolist() == [0, 1, 255, 255] and unknown == 1
    assert labels.headline == (0, 1) and labels.formats() == ("folder",)


BAD_SETS = [
    ("palette: [[1, 2, 3]]\n", r"bad\.yaml: names: missing"),
    ("names: [a, b, c]\npalette: [[1, 2, 3], [4, 5, 6]]\n",
     r"bad\.yaml: palette: 2 colours for 3 names"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 256]]\n", r"bad\.yaml: palette\[1\]"),
    ("names: [a, b, a]\npalette: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\n",
     r"bad\.yaml: names\[2\]: 'a' is names\[0\] already"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nmaps:\n  folder:\n    classes:\n"
     "      a: [1]\n      0: [2]\n", r"bad\.yaml: maps\.folder\.classes: duplicate train id 0"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nmaps:\n  folder:\n    classes:\n"
     "      a: [1]\n      a: [2]\n", r"bad\.yaml, line 7: key 'a' is given twice"),
    ("names: [a, b, c]\npalette: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\nignore: 1\n",
     r"bad\.yaml: ignore: 1 collides with class 'b'"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nignore: 0\nmaps:\n  idda:\n    classes:\n"
     "      b: [0, 3]\n", r"bad\.yaml: ignore: 0 collides with class 'b' \(maps\.idda"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nmaps:\n  idda:\n    classes:\n"
     "      a: [4]\n      b: [4]\n", r"bad\.yaml: maps\.idda\.classes\.b: 4 is listed under 'a'"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nheadline: [a, c]\n",
     r"bad\.yaml: headline\[1\]: 'c' is not a class"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\nmaps:\n  cityscapes: {}\n",
     r"bad\.yaml: maps: unknown dataset format 'cityscapes'"),
    ("names: [a, b]\npalette: [[1, 2, 3], [4, 5, 6]]\npallete: []\n",
     r"bad\.yaml: unknown key 'pallete' \(did you mean 'palette'\?\)"),
    ("names: [a, b\n", r"bad\.yaml: not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD_SETS,
                         ids=[m.split(": ", 1)[-1][:30] for _, m in BAD_SETS])
def test_a_bad_set_is_one_error_naming_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(L.LabelSetError, match=message) as info:
        L.resolve_label_set(str(write_set(tmp_path, text, "bad.yaml")))
    assert "\n" not in str(info.value)


def test_a_label_set_must_agree_with_the_network(tmp_path):
    path = write_set(tmp_path, LANES)
    assert L.resolve_label_set(str(path), num_classes=3).num_classes == 3
    with pytest.raises(L.LabelSetError, match=r"model\.num_classes=12 but data\.label_set "
                                              r"'lanes' \(.*lanes\.yaml\) has 3 classes"):
        L.resolve_label_set(str(path), num_classes=12)
    with pytest.raises(L.LabelSetError, match="neither a preset"):
        L.resolve_label_set("camvid11")
    with pytest.raises(L.LabelSetError, match="label set file not found"):
        L.resolve_label_set(str(tmp_path / "missing.yaml"))


def test_every_dataset_format_can_be_mapped():
    from uda_seg_core.data import DATASETS

    assert set(L.LABEL_FORMATS) == set(DATASETS)
    assert set(L.camvid12().formats()) == set(DATASETS)
