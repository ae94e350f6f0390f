"""A plain folder of images and index labels, for a user's own classes ('folder' format).

    root/images/<name>.png|.jpg|.jpeg|.bmp   images (any size; each label matches its image)
    root/labels/<name>.png                   single-channel 8-bit PNGs: one id per pixel
    root/train.txt, val.txt, test.txt, ...   optional: one stem (or file name) per line

A label's ids map to train ids through the label set's `folder` map (by default id i is
class i); the set's `ignore` id (255 by default) and every id the map does not list are
ignored, the unlisted ones counted with one warning. A split is the stems its
`<split>.txt` lists; 'all' is every image; 'train' without a train.txt is every image no
other list in the root names (so a val.txt alone holds out a validation split).

    from uda_seg_core.data import build_dataset
    ds = build_dataset("folder", "data/lanes", "train", label_set="config/lanes.yaml")
"""
from __future__ import annotations

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
from uda_seg_core.labels import LabelSet, camvid12, map_index_label

EVERY_IMAGE = "all"  # the split that is every image, list or not
REST = "train"  # without train.txt: every image no other <split>.txt names


class Folder(SegmentationDataset):
    """images/ + labels/ paired by stem; `names` sorted naturally."""

    kind = "folder"
    unknown_what = "label id"

    def __init__(self, root: str | Path, splits: list[str], transform=None, limit: int = 0,
                 with_labels: bool = True, label_set: LabelSet | None = None):
        self.root = Path(root)
        label_set = label_set or camvid12()
        if with_labels:
            self.tables = label_set.label_map("folder").index_tables()
            self.fallback = label_set.fallback_name("folder")
        image_dir, label_dir = self.root / "images", self.root / "labels"
        for folder in (image_dir, label_dir) if with_labels else (image_dir,):
            if not folder.is_dir():
                raise DatasetFormatError(f"{folder} not found: the folder layout is "
                                         f"images/<name>.png|jpg and labels/<name>.png. "
                                         f"{layout_hint(self.root, 'folder')}")
        images = {p.stem: p for p in image_files(image_dir)}
        if not images:
            raise DatasetFormatError(f"{image_dir} holds no images (.png, .jpg, .jpeg, .bmp)")
        labels: dict[str, Path] = {}
        if with_labels:
            labels = {p.stem: p for p in image_files(label_dir)}
            pair_by_name(images, labels, image_dir, label_dir,
                         "Each images/<name>.png|jpg needs labels/<name>.png.")
        names = self._select(sorted(images, key=natural_key), splits)
        super().__init__(names, images, labels, transform, limit, with_labels, label_set)

    def _select(self, names: list[str], splits: list[str]) -> list[str]:
        lists = {p.stem: p for p in self.root.glob("*.txt") if p.is_file()}
        chosen: list[str] = []
        available = set(names)
        for split in splits:
            if split in lists:
                stems = read_split_list(lists[split])
                unknown = [s for s in stems if s not in available]
                if unknown:
                    raise DatasetFormatError(f"{lists[split]} lists {len(unknown)} stem(s) with "
                                             f"no image in {self.root / 'images'}: "
                                             f"{list_names(unknown)}")
                chosen.extend(stems)
            elif split == EVERY_IMAGE:
                chosen.extend(names)
            elif split == REST:
                listed = {s for p in lists.values() for s in read_split_list(p)}
                chosen.extend(n for n in names if n not in listed)
            else:
                raise DatasetFormatError(
                    f"folder split '{split}' needs {self.root / (split + '.txt')} (one image "
                    f"stem per line); present: {', '.join(sorted(lists)) or 'no lists'}, and "
                    f"'{EVERY_IMAGE}' (every image), '{REST}' (every image no list names)")
        chosen = sorted(dict.fromkeys(chosen), key=natural_key)
        if not chosen:
            raise DatasetFormatError(f"{self.root}: split(s) {'+'.join(splits)} hold no image")
        return chosen

    def read_label(self, path: Path) -> tuple[np.ndarray, int]:
        data = read_unchanged(path)
        if data.ndim == 3:
            grey = data[..., 0]
            if data.shape[2] not in (3, 4) or not (np.array_equal(grey, data[..., 1])
                                                   and np.array_equal(grey, data[..., 2])):
                raise DatasetFormatError(f"label {path} is a colour image; the folder format "
                                         f"has single-channel labels, one id per pixel")
            data = grey
        return map_index_label(np.ascontiguousarray(data), self.tables)
