"""The paper's 12-class label space and every mapping into it.

Classes follow the paper (section IV-A): the 11 named CamVid classes plus Background,
which is a trained class. The headline mIoU is over the 11 named classes (0-10).

    from uda_seg_core.labels import CLASS_NAMES, camvid_rgb_to_ids, ids_to_rgb
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Bicyclist", "Building", "Car", "Column_Pole", "Fence", "Pedestrian",
    "Road", "Sidewalk", "SignSymbol", "Sky", "Tree", "Background",
)
NUM_CLASSES = len(CLASS_NAMES)
BACKGROUND = 11
NAMED_CLASSES = tuple(range(BACKGROUND))  # the 11 classes the headline mIoU averages
IGNORE_INDEX = 255  # never a class id; used only for padding after geometric transforms

# CamVid's colours for the 11 named classes; Background is drawn black (CamVid's Void).
PALETTE = np.array(
    [
        (0, 128, 192),    # Bicyclist
        (128, 0, 0),      # Building
        (64, 0, 128),     # Car
        (192, 192, 128),  # Column_Pole
        (64, 64, 128),    # Fence
        (64, 64, 0),      # Pedestrian
        (128, 64, 128),   # Road
        (0, 0, 192),      # Sidewalk
        (192, 128, 128),  # SignSymbol
        (128, 128, 128),  # Sky
        (128, 128, 0),    # Tree
        (0, 0, 0),        # Background
    ],
    dtype=np.uint8,
)

# The full 32-colour CamVid table (name -> RGB). Only the 11 named classes keep an
# identity; the other 21 collapse onto Background.
CAMVID_COLOURS: dict[str, tuple[int, int, int]] = {
    "Animal": (64, 128, 64),
    "Archway": (192, 0, 128),
    "Bicyclist": (0, 128, 192),
    "Bridge": (0, 128, 64),
    "Building": (128, 0, 0),
    "Car": (64, 0, 128),
    "CartLuggagePram": (64, 0, 192),
    "Child": (192, 128, 64),
    "Column_Pole": (192, 192, 128),
    "Fence": (64, 64, 128),
    "LaneMkgsDriv": (128, 0, 192),
    "LaneMkgsNonDriv": (192, 0, 64),
    "Misc_Text": (128, 128, 64),
    "MotorcycleScooter": (192, 0, 192),
    "OtherMoving": (128, 64, 64),
    "ParkingBlock": (64, 192, 128),
    "Pedestrian": (64, 64, 0),
    "Road": (128, 64, 128),
    "RoadShoulder": (128, 128, 192),
    "Sidewalk": (0, 0, 192),
    "SignSymbol": (192, 128, 128),
    "Sky": (128, 128, 128),
    "SUVPickupTruck": (64, 128, 192),
    "TrafficCone": (0, 0, 64),
    "TrafficLight": (0, 64, 64),
    "Train": (192, 64, 128),
    "Tree": (128, 128, 0),
    "Truck_Bus": (192, 128, 192),
    "Tunnel": (64, 0, 64),
    "VegetationMisc": (192, 192, 0),
    "Void": (0, 0, 0),
    "Wall": (64, 192, 0),
}
CAMVID_NAME_TO_CLASS: dict[str, int] = {
    name: (CLASS_NAMES.index(name) if name in CLASS_NAMES else BACKGROUND)
    for name in CAMVID_COLOURS
}

# SegNet's 360x480 CamVid release: 0 Sky, 1 Building, 2 Pole, 3 Road, 4 Pavement,
# 5 Tree, 6 SignSymbol, 7 Fence, 8 Car, 9 Pedestrian, 10 Bicyclist, 11 Unlabelled.
SEGNET_TO_CLASS = np.array([9, 1, 3, 6, 7, 10, 8, 4, 2, 5, 0, BACKGROUND], dtype=np.uint8)

# IDDA (CARLA) semantic ids 0-26, stored in the red channel of the label PNGs, named as
# in the dataset's classes_info.json ("label" list).
IDDA_ID_NAMES: tuple[str, ...] = (
    "unlabeled", "building", "fence", "other", "pedestrian", "pole", "roadline",
    "road", "sidewalk", "vegetation", "car", "wall", "tsign", "tlight", "guardrail",
    "dynamic", "bicycle", "motorcycle", "rider", "terrain", "sky", "railtrack", "ground",
    "statics", "bridge", "water", "truck",
)
IDDA_ID_TO_NAMED_CLASS: dict[int, int] = {
    1: 1,    # building -> Building
    2: 4,    # fence -> Fence
    4: 5,    # pedestrian -> Pedestrian
    5: 3,    # pole -> Column_Pole
    6: 6,    # roadline -> Road
    7: 6,    # road -> Road
    8: 7,    # sidewalk -> Sidewalk
    9: 10,   # vegetation -> Tree
    10: 2,   # car -> Car
    12: 8,   # tsign -> SignSymbol
    16: 0,   # bicycle -> Bicyclist
    20: 9,   # sky -> Sky
    24: 1,   # bridge -> Building
}
NUM_IDDA_IDS = len(IDDA_ID_NAMES)
# Look-up table over all 256 byte values: ids 27-255 are not IDDA ids and land on
# Background too (counted by the loader).
IDDA_TO_CLASS = np.full(256, BACKGROUND, dtype=np.uint8)
for _idda_id, _cls in IDDA_ID_TO_NAMED_CLASS.items():
    IDDA_TO_CLASS[_idda_id] = _cls


def _rgb_key(rgb: np.ndarray) -> np.ndarray:
    """Pack an (..., 3) uint8 RGB array into one int32 per pixel."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colour_table_lut(colour_to_class: dict[tuple[int, int, int], int]) -> np.ndarray:
    """A 2^24-entry look-up table from packed RGB to class id; 255 marks unknown colours."""
    lut = np.full(1 << 24, IGNORE_INDEX, dtype=np.uint8)
    for (r, g, b), cls in colour_to_class.items():
        lut[(r << 16) | (g << 8) | b] = cls
    return lut


_CAMVID_LUT: np.ndarray | None = None


def camvid_colour_to_class() -> dict[tuple[int, int, int], int]:
    """CamVid colour -> one of the 12 classes, for all 32 CamVid colours."""
    return {rgb: CAMVID_NAME_TO_CLASS[name] for name, rgb in CAMVID_COLOURS.items()}


def camvid_rgb_to_ids(
    label_rgb: np.ndarray, lut: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Map a CamVid colour label (H, W, 3 RGB) to class ids.

    Returns (ids, n_unknown): colours outside the table become Background and are counted
    so the caller can warn about them.
    """
    global _CAMVID_LUT
    if label_rgb.ndim != 3 or label_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB label, got shape {label_rgb.shape}")
    if lut is None:
        if _CAMVID_LUT is None:
            _CAMVID_LUT = colour_table_lut(camvid_colour_to_class())
        lut = _CAMVID_LUT
    ids = lut[_rgb_key(label_rgb)]
    unknown = ids == IGNORE_INDEX
    n_unknown = int(unknown.sum())
    if n_unknown:
        ids = ids.copy()
        ids[unknown] = BACKGROUND
    return ids, n_unknown


def segnet_to_ids(label: np.ndarray) -> tuple[np.ndarray, int]:
    """Map SegNet CamVid indices (0-11) to class ids; other values -> Background, counted."""
    label = np.asarray(label)
    valid = label < len(SEGNET_TO_CLASS)
    ids = np.full(label.shape, BACKGROUND, dtype=np.uint8)
    ids[valid] = SEGNET_TO_CLASS[label[valid]]
    return ids, int((~valid).sum())


def idda_to_ids(red: np.ndarray) -> tuple[np.ndarray, int]:
    """Map IDDA ids (the red channel) to class ids; values >= 27 -> Background, counted."""
    red = np.asarray(red, dtype=np.uint8)
    return IDDA_TO_CLASS[red], int((red >= NUM_IDDA_IDS).sum())


def ids_to_rgb(ids: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Colour a class-id mask (H, W) with the palette; ids outside it are drawn black."""
    ids = np.asarray(ids)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = palette
    return lut[ids.astype(np.uint8)]


def rgb_to_ids(rgb: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Inverse of ids_to_rgb for images drawn with `palette` (unknown colours -> 255)."""
    lut = colour_table_lut({tuple(int(c) for c in col): i for i, col in enumerate(palette)})
    return lut[_rgb_key(rgb)]
