"""IDDA (CARLA-rendered) in its released layout, read unchanged into a label set's classes.

    IDDA/rgb/<stem>.jpg          images
    IDDA/labels/<stem>.png       RGBA (or RGB) labels; the IDDA id 0-26 is in the red channel
    IDDA/classes_info.json       {"classes": 27, "label2camvid": [[id, camvid], ...], ...}

Ids map to the paper's classes with `labels.IDDA_TO_CLASS` (13 ids keep a named class,
the others and any value >= 27 are Background). `classes_info.json` is checked against
that mapping and a disagreement is logged; it is optional. With another label set the
ids map through its `idda` map.

IDDA has no official splits. `split` names a stem list `<root>/<split>.txt` (one stem or
file name per line); without such a file, 'train' and 'all' mean every image.

    from uda_seg_core.data import build_dataset
    ds = build_dataset("idda", "data/IDDA", "all")
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from uda_seg_core.data.base import (
    DatasetFormatError,
    SegmentationDataset,
    image_files,
    list_names,
    natural_key,
    pair_by_name,
    read_split_list,
    read_unchanged,
)
from uda_seg_core.data.formats import layout_hint
from uda_seg_core.labels import BACKGROUND, IDDA_TO_CLASS, LabelSet, camvid12, map_index_label

log = logging.getLogger(__name__)

ALL_SPLITS = ("train", "all")  # split names that mean "every file" when no <split>.txt exists


def read_classes_info(path: Path) -> dict:
    """Parse classes_info.json; copies of it with a trailing comma are accepted."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(re.sub(r",\s*([\]}])", r"\1", text))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path} is not valid JSON ({exc}); expected the IDDA "
                                 f"classes_info.json with a 'label2camvid' list") from None


def check_label2camvid(info: dict, path: Path) -> list[int]:
    """IDDA ids whose `label2camvid` entry disagrees with the paper's mapping (logged)."""
    pairs = info.get("label2camvid")
    if pairs is None:
        return []
    differ = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DatasetFormatError(f"{path}: label2camvid entries must be [idda_id, camvid_id], "
                                     f"got {pair}")
        idda_id, camvid = int(pair[0]), int(pair[1])
        theirs = BACKGROUND if camvid == 255 or camvid >= BACKGROUND else camvid
        if 0 <= idda_id < 256 and IDDA_TO_CLASS[idda_id] != theirs:
            differ.append(idda_id)
    if differ:
        log.warning("%s: label2camvid disagrees with the paper's IDDA mapping for ids %s; "
                    "using the paper's mapping (labels.IDDA_TO_CLASS)", path, differ)
    return differ


class IDDA(SegmentationDataset):
    """IDDA images and labels paired by stem; `names` sorted naturally."""

    kind = "IDDA"
    unknown_what = "id (>= 27)"

    def __init__(self, root: str | Path, splits: list[str], transform=None, limit: int = 0,
                 with_labels: bool = True, label_set: LabelSet | None = None):
        self.root = Path(root)
        label_set = label_set or camvid12()
        if with_labels:
            self.tables = label_set.label_map("idda").index_tables()
            self.fallback = label_set.fallback_name("idda")
            if not label_set.is_preset:
                self.unknown_what = "value"
        image_dir, label_dir = self.root / "rgb", self.root / "labels"
        for folder in (image_dir, label_dir) if with_labels else (image_dir,):
            if not folder.is_dir():
                raise DatasetFormatError(f"{folder} not found: the IDDA layout is rgb/*.jpg, "
                                         f"labels/*.png, classes_info.json. "
                                         f"{layout_hint(self.root, 'idda')}")
        info_path = self.root / "classes_info.json"
        self.classes_info = read_classes_info(info_path) if info_path.is_file() else {}
        if not info_path.is_file():
            log.info("%s not found; using the paper's IDDA mapping", info_path)
        if label_set.is_preset:  # its label2camvid is about the paper's classes
            check_label2camvid(self.classes_info, info_path)
        images = {p.stem: p for p in image_files(image_dir)}
        if not images:
            raise DatasetFormatError(f"{image_dir} holds no images (.jpg, .png)")
        labels: dict[str, Path] = {}
        if with_labels:
            labels = {p.stem: p for p in image_files(label_dir)}
            pair_by_name(images, labels, image_dir, label_dir,
                         "Each rgb/<stem>.jpg needs labels/<stem>.png.")
        names = self._select(sorted(images, key=natural_key), splits)
        super().__init__(names, images, labels, transform, limit, with_labels, label_set)

    def _select(self, names: list[str], splits: list[str]) -> list[str]:
        chosen: list[str] = []
        available = set(names)
        for split in splits:
            listing = self.root / f"{split}.txt"
            if listing.is_file():
                stems = read_split_list(listing)
                unknown = [s for s in stems if s not in available]
                if unknown:
                    raise DatasetFormatError(f"{listing} lists {len(unknown)} stem(s) with no "
                                             f"image in {self.root / 'rgb'}: {list_names(unknown)}")
                chosen.extend(stems)
            elif split in ALL_SPLITS:
                chosen.extend(names)
            else:
                raise DatasetFormatError(f"IDDA split '{split}' needs {listing} (one image stem "
                                         f"per line); without a list only {' / '.join(ALL_SPLITS)} "
                                         f"(every image) exist")
        return sorted(dict.fromkeys(chosen), key=natural_key)

    def read_label(self, path: Path) -> tuple[np.ndarray, int]:
        data = read_unchanged(path)
        if data.ndim == 3:
            if data.shape[2] < 3:
                raise DatasetFormatError(f"label {path} has {data.shape[2]} channels; expected "
                                         f"RGB(A) with the IDDA id in red")
            data = data[..., 2]  # OpenCV stores BGR(A): index 2 is red
        return map_index_label(np.ascontiguousarray(data), self.tables)

