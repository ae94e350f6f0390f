"""Label sets: the classes a network is trained on, and every mapping into them.

The default set is the paper's (section IV-A): the 11 named CamVid classes plus
Background, which is a trained class; the headline mIoU is over the 11 named classes
(0-10). Its tables are the constants below (CLASS_NAMES, PALETTE, the CamVid colours, the
SegNet and IDDA id maps), and `camvid12()` is the same set as a `LabelSet`.

A `LabelSet` is the whole description of a label space: class names (train id = index),
a colour per class, which classes the headline mIoU averages, and per dataset format a
`LabelMap` from the dataset's on-disk ids (or, for the CamVid colour layout, its colour
names) to train ids. Choices:

- Train id 255 (IGNORE_INDEX) is the one "no class" value of training, metrics and the
  node's class_mask; it is never a class, so a set has at most 255 classes.
- A set's `ignore` (default 255) is the id that means "not labelled" in the dataset's
  index label files: it maps to 255 in every index format the set maps (folder,
  camvid_segnet, idda) and may not be listed for a class.
- A value a map does not list becomes the map's `unknown`: a named fallback class or
  ignore (the default for a user's set); the loader counts those pixels and warns once.
  The 'folder' map defaults to the identity (id i is class i).
- The headline classes are all classes unless the set names some.
- camvid12 is built here in code and is the default (`data.label_set: camvid12`): its
  maps reproduce the paper's tables exactly (every SegNet or IDDA value lands on a class,
  unknown ones on Background). A user's set is a YAML file (`load_label_set`), README
  "Your own classes"; the same document, with names for train ids, is the record a
  checkpoint, a run's config.yaml and an exported model's metadata carry (`to_record`,
  `resolve_label_set` reads all three).

    from uda_seg_core.labels import CLASS_NAMES, camvid_rgb_to_ids, ids_to_rgb
    labels = resolve_label_set("config/labels/lanes.yaml")   # or "camvid12", or a record
    train_ids, known = labels.label_map("folder").index_tables()

Longer than 500 lines for a reason: about 100 of them are the paper's tables as data (the
CamVid colours, the SegNet and IDDA id maps), and the YAML validation that names the file
and key of every mistake belongs beside the set it checks.
"""
from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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


# ----------------------------------------------------------------------------- label sets

PRESET = "camvid12"  # the paper's set, built below; the default of data.label_set
PRESETS: tuple[str, ...] = (PRESET,)
# The dataset formats a set maps (data.DATASETS; a test keeps them equal). 'camvid' labels
# are colours, mapped by their names in class_dict.csv / label_colors.txt; the others hold
# ids (one byte per pixel).
LABEL_FORMATS: tuple[str, ...] = ("camvid", "camvid_segnet", "idda", "folder")
COLOUR_FORMATS = frozenset({"camvid"})
MAX_SET_CLASSES = IGNORE_INDEX  # train ids 0-254: 255 is the ignore value
IGNORE_WORD = "ignore"  # what a map's `unknown` says for "ignore those pixels"
SET_KEYS = ("name", "names", "palette", "ignore", "headline", "maps", "source")
MAP_KEYS = ("classes", "ignore", "unknown")
SET_HELP = "README, 'Your own classes'"


class LabelSetError(ValueError):
    """A label set that cannot be used; the message names the file (or record) and the key."""


@dataclass(frozen=True)
class LabelMap:
    """How the labels of one dataset format become train ids.

    `entries`: (the dataset's id, or a colour name in a colour format) -> train id, 255
    (IGNORE_INDEX) for ignored values; every other value becomes `unknown` (a train id or
    255) and is counted by the loader.
    """

    entries: tuple[tuple[int | str, int], ...]
    unknown: int = IGNORE_INDEX

    def index_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(train id of each byte value, whether the map lists it): 256 entries each."""
        train = np.full(256, self.unknown, dtype=np.uint8)
        known = np.zeros(256, dtype=bool)
        for value, cls in self.entries:
            train[int(value)] = cls
            known[int(value)] = True
        return train, known

    def class_of_name(self, name: str) -> int:
        """The train id of a colour name (case-insensitive); `unknown` if not listed."""
        wanted = name.strip().lower()
        return next((cls for key, cls in self.entries if str(key).lower() == wanted),
                    self.unknown)


@dataclass(frozen=True)
class LabelSet:
    """Class names (train id = index), their colours, the headline classes and, per
    dataset format, the map from the dataset's labels to train ids."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    headline: tuple[int, ...]
    maps: tuple[tuple[str, LabelMap], ...]
    ignore: int = IGNORE_INDEX  # the dataset's "not labelled" id in index label files
    source: str = PRESET  # the YAML file it was read from, or 'camvid12'

    ignore_index = IGNORE_INDEX  # train id of ignored pixels, in training and served masks

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def is_preset(self) -> bool:
        return self.name in PRESETS and self.source == self.name

    def describe(self) -> str:
        return self.name if self.is_preset else f"'{self.name}' ({self.source})"

    def palette_array(self) -> np.ndarray:
        return np.array(self.palette, dtype=np.uint8).reshape(-1, 3)

    def formats(self) -> tuple[str, ...]:
        return tuple(fmt for fmt, _ in self.maps)

    def label_map(self, fmt: str) -> LabelMap:
        """The map of dataset format `fmt`; a set without one is an error saying so."""
        for name, mapping in self.maps:
            if name == fmt:
                return mapping
        raise LabelSetError(f"label set {self.describe()} has no map for the '{fmt}' dataset "
                            f"format (it maps: {', '.join(self.formats())}); add maps.{fmt} "
                            f"to it ({SET_HELP})")

    def fallback_name(self, fmt: str) -> str:
        """What unlisted values of `fmt` become, in words (for warnings)."""
        unknown = self.label_map(fmt).unknown
        return self.names[unknown] if unknown < self.num_classes else "ignore (255)"

    def to_record(self) -> dict:
        """The set as JSON-ready data in the YAML file's own schema (class names for
        train ids): what checkpoints, a run's config.yaml and model metadata carry."""
        maps = {}
        for fmt, mapping in self.maps:
            classes: dict[str, list] = {name: [] for name in self.names}
            ignored = []
            for value, cls in mapping.entries:
                (ignored if cls == IGNORE_INDEX else classes[self.names[cls]]).append(value)
            maps[fmt] = {"classes": {k: v for k, v in classes.items() if v}, "ignore": ignored,
                         "unknown": (self.names[mapping.unknown]
                                     if mapping.unknown < self.num_classes else IGNORE_WORD)}
        return {"name": self.name, "source": self.source, "names": list(self.names),
                "palette": [list(c) for c in self.palette], "ignore": self.ignore,
                "headline": [self.names[i] for i in self.headline], "maps": maps}


def identity_map(num_classes: int, ignore: int) -> LabelMap:
    """The default 'folder' map: id i is class i; `ignore` is ignored, the rest unknown."""
    entries = [(i, i) for i in range(num_classes)] + [(ignore, IGNORE_INDEX)]
    return LabelMap(tuple(sorted(entries, key=lambda e: int(e[0]))), IGNORE_INDEX)


@functools.cache
def camvid12() -> LabelSet:
    """The paper's 12 classes as a LabelSet: the tables above, unchanged."""
    maps = (
        ("camvid", LabelMap(tuple(sorted(CAMVID_NAME_TO_CLASS.items(),
                                         key=lambda e: e[0].lower())), BACKGROUND)),
        ("camvid_segnet", LabelMap(tuple((i, int(c)) for i, c in enumerate(SEGNET_TO_CLASS)),
                                   BACKGROUND)),
        ("idda", LabelMap(tuple((i, int(IDDA_TO_CLASS[i])) for i in range(NUM_IDDA_IDS)),
                          BACKGROUND)),
        ("folder", identity_map(NUM_CLASSES, IGNORE_INDEX)),
    )
    return LabelSet(PRESET, CLASS_NAMES, tuple(tuple(int(v) for v in c) for c in PALETTE),
                    NAMED_CLASSES, maps, IGNORE_INDEX, PRESET)


def map_index_label(values: np.ndarray,
                    tables: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, int]:
    """Dataset ids (HxW uint8) -> (train ids, pixels whose value the map does not list)."""
    train, known = tables
    values = np.asarray(values, dtype=np.uint8)
    return train[values], int(values.size - np.count_nonzero(known[values]))


def colour_tables(colour_to_class: Mapping[tuple[int, int, int], int],
                  unknown: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed RGB -> row of the colour table, 255 for colours not in it; row -> train id,
    row 255 -> `unknown`): a colour label's two look-ups (`map_colour_label`)."""
    if len(colour_to_class) > 255:
        raise LabelSetError(f"{len(colour_to_class)} colours in one colour table; at most 255")
    rows = colour_table_lut({rgb: row for row, rgb in enumerate(colour_to_class)})
    classes = np.full(256, unknown, dtype=np.uint8)
    classes[: len(colour_to_class)] = list(colour_to_class.values())
    return rows, classes


def map_colour_label(label_rgb: np.ndarray,
                     tables: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, int]:
    """A colour label (HxWx3 RGB) -> (train ids, pixels of a colour not in the table)."""
    rows, classes = tables
    row = rows[_rgb_key(label_rgb)]
    return classes[row], int(np.count_nonzero(row == 255))


# --------------------------------------------------------------- reading a set (YAML, record)

class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        super().__init__(key, line)
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)):
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_keys(data: Mapping, allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            match = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.0)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise LabelSetError(f"{where}: unknown key '{key}'{hint}; a label set has "
                                f"{', '.join(allowed)}")


def _names(data: Mapping, where: str) -> tuple[str, ...]:
    names = data.get("names")
    if names is None:
        raise LabelSetError(f"{where}: names: missing (the class names, a list in train-id "
                            f"order: names: [road, car, other])")
    if not isinstance(names, list) or not names:
        raise LabelSetError(f"{where}: names: expected a non-empty list of class names, got "
                            f"{names!r}")
    if len(names) > MAX_SET_CLASSES:
        raise LabelSetError(f"{where}: names: {len(names)} classes; at most {MAX_SET_CLASSES} "
                            f"(train ids 0-254, 255 is ignore)")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise LabelSetError(f"{where}: names[{i}]: expected a class name, got {name!r}")
        if name == IGNORE_WORD:
            raise LabelSetError(f"{where}: names[{i}]: '{IGNORE_WORD}' is reserved (a map's "
                                f"'unknown: {IGNORE_WORD}'); name the class otherwise")
        if name in names[:i]:
            raise LabelSetError(f"{where}: names[{i}]: '{name}' is names[{names.index(name)}] "
                                f"already; class names are unique")
    return tuple(names)


def _palette(data: Mapping, count: int, where: str) -> tuple[tuple[int, int, int], ...]:
    palette = data.get("palette")
    if palette is None:
        raise LabelSetError(f"{where}: palette: missing (one [r, g, b] colour per class, in "
                            f"the order of names)")
    if not isinstance(palette, list) or len(palette) != count:
        got = f"{len(palette)} colours" if isinstance(palette, list) else repr(palette)
        raise LabelSetError(f"{where}: palette: {got} for {count} names; give one [r, g, b] "
                            f"per class, in the order of names")
    for i, colour in enumerate(palette):
        if not (isinstance(colour, list) and len(colour) == 3
                and all(_is_int(v) and 0 <= v <= 255 for v in colour)):
            raise LabelSetError(f"{where}: palette[{i}]: expected [r, g, b] with integers "
                                f"0-255, got {colour!r}")
    return tuple((c[0], c[1], c[2]) for c in palette)


def _train_id(value: Any, names: Sequence[str], where: str) -> int:
    """A class named by its name or its train id."""
    if isinstance(value, str) and value in names:
        return list(names).index(value)
    if _is_int(value) and 0 <= value < len(names):
        return value
    raise LabelSetError(f"{where}: {value!r} is not a class; use a name of names "
                        f"({', '.join(names)}) or a train id 0-{len(names) - 1}")


def _headline(data: Mapping, names: Sequence[str], where: str) -> tuple[int, ...]:
    headline = data.get("headline")
    if headline is None:
        return tuple(range(len(names)))
    if not isinstance(headline, list) or not headline:
        raise LabelSetError(f"{where}: headline: expected a non-empty list of classes (the "
                            f"ones the headline mIoU averages), got {headline!r}")
    ids = [_train_id(v, names, f"{where}: headline[{i}]") for i, v in enumerate(headline)]
    if len(set(ids)) != len(ids):
        raise LabelSetError(f"{where}: headline: a class is listed twice: {headline}")
    return tuple(sorted(ids))


def _ignore_id(data: Mapping, where: str) -> int:
    ignore = data.get("ignore", IGNORE_INDEX)
    if not (_is_int(ignore) and 0 <= ignore <= 255):
        raise LabelSetError(f"{where}: ignore: expected the dataset's 'not labelled' id, "
                            f"0-255, got {ignore!r}")
    return ignore


def _map_values(values: Any, fmt: str, where: str) -> list:
    """The dataset values a map lists for one class (or for ignore)."""
    values = values if isinstance(values, list) else [values]
    for value in values:
        ok = (isinstance(value, str) and value.strip()) if fmt in COLOUR_FORMATS else (
            _is_int(value) and 0 <= value <= 255)
        if not ok:
            kind = "colour names (as in class_dict.csv)" if fmt in COLOUR_FORMATS else \
                "ids 0-255"
            raise LabelSetError(f"{where}: expected {kind}, got {value!r}")
    return values


def _map_class_entries(spec: Mapping, fmt: str, names: Sequence[str], where: str) -> dict:
    """maps.<fmt>.classes -> {dataset value: train id}; a train id or a value given twice
    is an error."""
    classes = spec.get("classes") or {}
    if not isinstance(classes, Mapping):
        raise LabelSetError(f"{where}.classes: expected 'class: [ids]' entries, got {classes!r}")
    entries: dict = {}
    first_key: dict[int, Any] = {}
    for key, values in classes.items():
        cls = _train_id(key, names, f"{where}.classes")
        if cls in first_key:
            raise LabelSetError(f"{where}.classes: duplicate train id {cls} ('{names[cls]}'): "
                                f"given as {first_key[cls]!r} and as {key!r}")
        first_key[cls] = key
        for value in _map_values(values, fmt, f"{where}.classes.{key}"):
            folded = value.lower() if isinstance(value, str) else value
            if folded in entries:
                raise LabelSetError(f"{where}.classes.{key}: {value!r} is listed under "
                                    f"'{names[entries[folded][1]]}' already")
            entries[folded] = (value, cls)
    return entries


def _label_map(spec: Any, fmt: str, names: Sequence[str], ignore: int, source: str) -> LabelMap:
    where = f"{source}: maps.{fmt}"
    if not isinstance(spec, Mapping):
        raise LabelSetError(f"{where}: expected a mapping with {', '.join(MAP_KEYS)}, "
                            f"got {spec!r}")
    _unknown_keys(spec, MAP_KEYS, where)
    entries = _map_class_entries(spec, fmt, names, where)
    ignored = _map_values(spec.get("ignore") or [], fmt, f"{where}.ignore")
    if fmt not in COLOUR_FORMATS and ignore not in ignored:
        ignored = [*ignored, ignore]
    for value in ignored:
        folded = value.lower() if isinstance(value, str) else value
        if folded in entries and entries[folded][1] != IGNORE_INDEX:
            cls = entries[folded][1]
            key = f"ignore: {ignore}" if value == ignore else f"maps.{fmt}.ignore: {value!r}"
            raise LabelSetError(f"{source}: {key} collides with class '{names[cls]}' "
                                f"(maps.{fmt}.classes lists it under '{names[cls]}'): an "
                                f"ignored id cannot be a class")
        entries[folded] = (value, IGNORE_INDEX)
    unknown = spec.get("unknown", IGNORE_WORD)
    unknown = IGNORE_INDEX if unknown == IGNORE_WORD else _train_id(unknown, names,
                                                                    f"{where}.unknown")
    order = sorted(entries.values(), key=lambda e: (str(e[0]).lower() if isinstance(e[0], str)
                                                     else e[0]))
    return LabelMap(tuple(order), unknown)


def _maps(data: Mapping, names: Sequence[str], ignore: int,
          where: str) -> tuple[tuple[str, LabelMap], ...]:
    maps = data.get("maps") or {}
    if not isinstance(maps, Mapping):
        raise LabelSetError(f"{where}: maps: expected 'format: map' entries, got {maps!r}")
    out = {}
    for fmt, spec in maps.items():
        if fmt not in LABEL_FORMATS:
            raise LabelSetError(f"{where}: maps: unknown dataset format '{fmt}'; one of "
                                f"{', '.join(LABEL_FORMATS)}")
        out[fmt] = _label_map(spec, fmt, names, ignore, where)
    if "folder" not in out:
        if ignore < len(names):
            raise LabelSetError(f"{where}: ignore: {ignore} collides with class "
                                f"'{names[ignore]}': without maps.folder a folder label's id i "
                                f"is class i; choose an ignore id >= {len(names)} or give "
                                f"maps.folder")
        out["folder"] = identity_map(len(names), ignore)
    return tuple((fmt, out[fmt]) for fmt in LABEL_FORMATS if fmt in out)


def parse_label_set(data: Any, where: str, name: str = "") -> LabelSet:
    """A LabelSet from the YAML schema (a file's contents or a stored record); errors name
    `where` (the file) and the key."""
    if not isinstance(data, Mapping):
        raise LabelSetError(f"{where}: expected a label set (names, palette, ...), got "
                            f"{type(data).__name__} {data!r}")
    _unknown_keys(data, SET_KEYS, where)
    if data.get("name") in PRESETS and data.get("source") == data.get("name"):
        return camvid12()  # a stored record of the preset
    set_name = data.get("name") or name or "labels"
    if not isinstance(set_name, str) or set_name in PRESETS:
        raise LabelSetError(f"{where}: name: {set_name!r} is not a name for a user's set "
                            f"({', '.join(PRESETS)} is built in)")
    names = _names(data, where)
    palette = _palette(data, len(names), where)
    ignore = _ignore_id(data, where)
    return LabelSet(set_name, names, palette, _headline(data, names, where),
                    _maps(data, names, ignore, where), ignore, str(data.get("source") or where))


def load_label_set(path: str | Path) -> LabelSet:
    """A user's label set from its YAML file (README, 'Your own classes')."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelSetError(f"label set file not found: {path}") from None
    except OSError as exc:
        raise LabelSetError(f"cannot read label set {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise LabelSetError(f"{path}, line {dup.line}: key {dup.key!r} is given twice in one "
                            f"mapping (a class, train id or setting named twice)") from None
    except yaml.YAMLError as exc:
        raise LabelSetError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_label_set(data, str(path), name=path.stem)


def resolve_label_set(spec: Any = PRESET, num_classes: int | None = None) -> LabelSet:
    """The set `data.label_set` names: 'camvid12', a YAML file, a record (mapping) or a
    LabelSet. With `num_classes` (model.num_classes) the two must agree."""
    if isinstance(spec, LabelSet):
        labels = spec
    elif spec is None or spec in PRESETS:
        labels = camvid12()
    elif isinstance(spec, Mapping):
        labels = parse_label_set(spec, str(spec.get("source") or "data.label_set record"))
    elif isinstance(spec, (str, Path)) and (Path(spec).suffix.lower() in (".yaml", ".yml")
                                            or Path(spec).is_file()):
        labels = load_label_set(spec)
    else:
        raise LabelSetError(f"data.label_set: {spec!r} is neither a preset "
                            f"({', '.join(PRESETS)}) nor a label set file (.yaml)")
    if num_classes is not None and num_classes != labels.num_classes:
        raise LabelSetError(
            f"model.num_classes={num_classes} but data.label_set {labels.describe()} has "
            f"{labels.num_classes} classes ({', '.join(labels.names)}): set "
            f"model.num_classes={labels.num_classes}")
    return labels
