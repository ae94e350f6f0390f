"""Every entry of every mapping table lands on the paper's 12 classes."""
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
