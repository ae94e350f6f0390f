"""CamVid in either of its two published layouts, read unchanged into a label set's classes.

Colour layout (960x720, 32 colours): `train/ val/ test/` images, `train_labels/ val_labels/
test_labels/` with `<name>_L.png` RGB labels, and `class_dict.csv` (`name,r,g,b[,class_11]`).
The 11 named classes keep their identity; every other CamVid colour is Background.
Without class_dict.csv the original release's `label_colors.txt` (`r g b<TAB>name`) is
used, then the built-in 32-colour table.

SegNet layout (480x360): `train/ trainannot/ val/ valannot/ test/ testannot/`, integer
labels 0 Sky ... 10 Bicyclist, 11 Unlabelled, remapped to the paper's order.

That is the paper's set (`labels.camvid12`); with another label set, colour names map
through its `camvid` map and SegNet ids through its `camvid_segnet` map.

    from uda_seg_core.data import build_dataset
    ds = build_dataset("camvid", "data/CamVid", "train+val")
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uda_seg_core.data.base import (
    DatasetFormatError,
    SegmentationDataset,
    image_files,
    natural_key,
    pair_by_name,
    read_unchanged,
)
from uda_seg_core.data.formats import layout_hint
from uda_seg_core.labels import (
    BACKGROUND,
    CAMVID_COLOURS,
    CAMVID_NAME_TO_CLASS,
    LabelSet,
    camvid12,
    colour_tables,
    map_colour_label,
    map_index_label,
)

log = logging.getLogger(__name__)

LABEL_SUFFIX = "_L"
SPLITS = ("train", "val", "test")
_CLASS_BY_LOWER_NAME = {name.lower(): cls for name, cls in CAMVID_NAME_TO_CLASS.items()}
ClassOf = Callable[[str], int]  # a CamVid colour name -> train id


def class_of_camvid_name(name: str) -> int:
    """One of the 12 classes for a CamVid colour name; names outside the 11 are Background."""
    return _CLASS_BY_LOWER_NAME.get(name.strip().lower(), BACKGROUND)


def _colour(values: list[str], path: Path, line: int) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(float(v)) for v in values)
    except ValueError:
        raise DatasetFormatError(f"{path}, line {line}: r,g,b must be integers, "
                                 f"got {values}") from None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise DatasetFormatError(f"{path}, line {line}: r,g,b must be 3 values in 0-255, got "
                                 f"{values}")
    return rgb  # type: ignore[return-value]


def read_class_dict(path: Path, class_of: ClassOf = class_of_camvid_name
                    ) -> dict[tuple[int, int, int], int]:
    """`class_dict.csv` (`name,r,g,b[,class_11]`) -> colour -> class id (`class_of` a name)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetFormatError(f"{path} is empty; expected a header 'name,r,g,b'")
    header = [h.strip().lower() for h in rows[0]]
    if header[:4] != ["name", "r", "g", "b"]:
        raise DatasetFormatError(f"{path}: header is {rows[0]}; expected 'name,r,g,b[,class_11]'")
    table: dict[tuple[int, int, int], int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 4:
            raise DatasetFormatError(f"{path}, line {line}: expected name,r,g,b, got {row}")
        rgb = _colour(row[1:4], path, line)
        cls = class_of(row[0])
        if table.get(rgb, cls) != cls:
            raise DatasetFormatError(f"{path}, line {line}: colour {rgb} is listed twice "
                                     f"for different classes")
        table[rgb] = cls
    return table


def read_label_colors_txt(path: Path, class_of: ClassOf = class_of_camvid_name
                          ) -> dict[tuple[int, int, int], int]:
    """The original release's `label_colors.txt` (`r g b<TAB>name`) -> colour -> class id."""
    table: dict[tuple[int, int, int], int] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = text.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise DatasetFormatError(f"{path}, line {line}: expected 'r g b name', got {text!r}")
        table[_colour(parts[:3], path, line)] = class_of(parts[3])
    return table


def colour_table(root: Path, class_of: ClassOf = class_of_camvid_name
                 ) -> tuple[dict[tuple[int, int, int], int], str]:
    """The colour -> class table of a CamVid root, and where it came from."""
    if (root / "class_dict.csv").is_file():
        return read_class_dict(root / "class_dict.csv", class_of), "class_dict.csv"
    if (root / "label_colors.txt").is_file():
        return read_label_colors_txt(root / "label_colors.txt", class_of), "label_colors.txt"
    log.info("%s has no class_dict.csv or label_colors.txt; using the built-in 32 CamVid colours",
             root)
    return {rgb: class_of(name) for name, rgb in CAMVID_COLOURS.items()}, "built-in CamVid"


class CamVid(SegmentationDataset):
    """One or more CamVid splits; `names` in sequence/frame order (e.g. 0001TP_006690)."""

    def __init__(self, root: str | Path, splits: list[str], layout: str = "colour", transform=None,
                 limit: int = 0, with_labels: bool = True, label_set: LabelSet | None = None):
        self.root = Path(root)
        if layout not in ("colour", "segnet"):
            raise ValueError(f"layout must be 'colour' or 'segnet', got {layout!r}")
        self.layout = layout
        fmt = "camvid" if layout == "colour" else "camvid_segnet"
        self.kind = f"CamVid {layout}"
        self.unknown_what = "colour" if layout == "colour" else "value"
        label_set = label_set or camvid12()
        if with_labels:
            mapping = label_set.label_map(fmt)
            self.fallback = label_set.fallback_name(fmt)
        if layout == "colour" and with_labels:
            table, self.table_source = colour_table(self.root, mapping.class_of_name)
            self.tables = colour_tables(table, mapping.unknown)
            self.kind = f"CamVid ({self.table_source})"
        elif with_labels:
            self.tables = mapping.index_tables()
        images: dict[str, Path] = {}
        labels: dict[str, Path] = {}
        for split in splits:
            split_images, split_labels = self._scan_split(split, fmt, with_labels)
            clash = images.keys() & split_images.keys()
            if clash:
                raise DatasetFormatError(f"{self.root}: split '{split}' repeats names of an "
                                         f"earlier split: {sorted(clash)[:10]}")
            images.update(split_images)
            labels.update(split_labels)
        names = sorted(images, key=natural_key)
        super().__init__(names, images, labels, transform, limit, with_labels, label_set)

    def _label_dir(self, split: str) -> Path:
        return self.root / (f"{split}_labels" if self.layout == "colour" else f"{split}annot")

    def _scan_split(self, split: str, fmt: str, with_labels: bool) -> tuple[dict, dict]:
        image_dir, label_dir = self.root / split, self._label_dir(split)
        if not image_dir.is_dir() or (with_labels and not label_dir.is_dir()):
            absent = image_dir if not image_dir.is_dir() else label_dir
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise DatasetFormatError(
                f"{absent} not found for split '{split}' in the CamVid {self.layout} layout "
                f"(folders present: {', '.join(present) or 'none'}). {layout_hint(self.root, fmt)}"
            )
        images = {p.stem: p for p in image_files(image_dir)}
        if not images:
            raise DatasetFormatError(f"{image_dir} holds no images (.png, .jpg, .jpeg, .bmp)")
        if not with_labels:
            return images, {}
        labels: dict[str, Path] = {}
        for p in image_files(label_dir):
            if self.layout == "colour":
                if not p.stem.endswith(LABEL_SUFFIX):
                    raise DatasetFormatError(
                        f"label {p} is not named <image name>{LABEL_SUFFIX}.png as the CamVid "
                        f"colour layout requires")
                labels[p.stem[: -len(LABEL_SUFFIX)]] = p
            else:
                labels[p.stem] = p
        hint = (f"Each image <name>.png needs {label_dir.name}/<name>{LABEL_SUFFIX}.png."
                if self.layout == "colour"
                else f"Each image needs {label_dir.name}/<same name>.png.")
        pair_by_name(images, labels, image_dir, label_dir, hint)
        return images, labels

    def read_label(self, path: Path) -> tuple[np.ndarray, int]:
        data = read_unchanged(path)
        if self.layout == "colour":
            if data.ndim != 3 or data.shape[2] < 3:
                raise DatasetFormatError(f"label {path} is single-channel; the CamVid colour "
                                         f"layout has RGB labels (is this the SegNet layout? use "
                                         f"camvid_segnet)")
            rgb = np.ascontiguousarray(data[..., 2::-1])  # BGR(A) -> RGB
            return map_colour_label(rgb, self.tables)
        if data.ndim == 3:
            grey = data[..., 0]
            if not (np.array_equal(grey, data[..., 1]) and np.array_equal(grey, data[..., 2])):
                raise DatasetFormatError(f"label {path} is a colour image; the SegNet layout has "
                                         f"integer labels 0-11 (is this the colour layout? use "
                                         f"camvid)")
            data = data[..., 0]
        return map_index_label(data, self.tables)
