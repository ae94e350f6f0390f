"""Datasets in their real on-disk formats, and the pieces every loader shares.

    from uda_seg_core.data import build_dataset
    ds = build_dataset("camvid", "data/CamVid", ["train", "val"])      # 960x720 colour labels
    ds = build_dataset("camvid_segnet", "data/SegNet-CamVid", "test")  # 360x480 integer labels
    ds = build_dataset("idda", "data/IDDA", "all")                     # rgb/ + labels/ (RGBA)
    item = ds[0]   # {'image': HxWx3 uint8 RGB, 'label': HxW uint8 class ids 0-11, 'name': str}

With a transform (`data.transforms.build_transforms`) an item holds a normalised float32
3xHxW image tensor and an int64 HxW label tensor. With `with_labels=False` (the unlabelled
target domain) items have no 'label' and label files are not required.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

FORMATS = ("camvid", "camvid_segnet", "idda")
FORMAT_CHOICES = ("auto", *FORMATS)  # what configs and --format accept
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Unpaired-file errors list this many names, then a count: enough to see the pattern.
MAX_LISTED = 10


class DatasetFormatError(ValueError):
    """A dataset folder that does not match the layout it was opened as."""


def natural_key(name: str) -> tuple:
    """Sort key that orders '..._f900' before '..._f1000' (sequence, then frame)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def list_names(paths: Sequence[str]) -> str:
    """'a, b, c and 12 more' for error messages."""
    shown = ", ".join(str(p) for p in paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")


def pair_by_name(
    images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path, hint: str
) -> list[str]:
    """Names present in both folders; any unpaired file is an error that names it."""
    missing = sorted((images[n].name for n in images.keys() - labels.keys()), key=natural_key)
    extra = sorted((labels[n].name for n in labels.keys() - images.keys()), key=natural_key)
    problems = []
    if missing:
        problems.append(f"{len(missing)} image(s) in {image_dir} have no label in {label_dir}: "
                        f"{list_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} label(s) in {label_dir} have no image in {image_dir}: "
                        f"{list_names(extra)}")
    if problems:
        raise DatasetFormatError("; ".join(problems) + f". {hint}")
    return sorted(images, key=natural_key)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (grey and alpha are converted)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"cannot read image {path}: missing, not an image, or truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_unchanged(path: Path) -> np.ndarray:
    """A label file as stored (grey HxW, BGR or BGRA), 8-bit."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetFormatError(f"cannot read label {path}: missing, not an image, or truncated")
    if data.dtype != np.uint8:
        raise DatasetFormatError(f"label {path} is {data.dtype}; expected 8-bit values")
    return data


def detect_formats(root: str | Path) -> list[str]:
    """Every layout a folder shows signs of: 'idda' (rgb/ + labels/), 'camvid_segnet'
    (<split>annot/), 'camvid' (<split>_labels/ or class_dict.csv), or 'synthetic' (a
    make-synthetic output holding idda/ and camvid/). More than one means ambiguous."""
    root = Path(root)
    if (root / "idda" / "rgb").is_dir() and (root / "camvid").is_dir():
        return ["synthetic"]
    found = []
    if (root / "rgb").is_dir() and (root / "labels").is_dir():
        found.append("idda")
    if any((root / f"{s}annot").is_dir() for s in ("train", "val", "test")):
        found.append("camvid_segnet")
    if any((root / f"{s}_labels").is_dir() for s in ("train", "val", "test")) or (
        root / "class_dict.csv"
    ).is_file():
        found.append("camvid")
    return found


def detect_format(root: str | Path) -> str | None:
    """The one layout a folder looks like ('synthetic' for a make-synthetic output), or
    None when it shows none or several."""
    found = detect_formats(root)
    return found[0] if len(found) == 1 else None


def resolve_format(fmt: str, root: str | Path) -> str:
    """`fmt` itself, or for 'auto' the layout read off the folder; an unknown or ambiguous
    folder is an error that lists what it holds and how to say the format."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DatasetFormatError(f"unknown dataset format '{fmt}'; choose from "
                                     f"{', '.join(FORMAT_CHOICES)}")
        return fmt
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder not found: {root}")
    found = detect_formats(root)
    if len(found) == 1 and found[0] in FORMATS:
        return found[0]
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    holds = f"it holds: {list_names(entries) or 'nothing'}"
    if found == ["synthetic"]:
        raise DatasetFormatError(f"{root} is a make-synthetic output, not one dataset: use "
                                 f"{root / 'idda'} (IDDA format) or {root / 'camvid'} (CamVid)")
    if found:
        raise DatasetFormatError(f"{root} is ambiguous: it looks like {' and '.join(found)} "
                                 f"({holds}); give the format explicitly")
    raise DatasetFormatError(
        f"cannot tell the layout of {root} ({holds}); expected CamVid colour (train/ + "
        f"train_labels/ or class_dict.csv), CamVid SegNet (train/ + trainannot/) or IDDA "
        f"(rgb/ + labels/)")


def layout_hint(root: Path, wanted: str) -> str:
    """A sentence for errors: what the folder looks like instead of `wanted`."""
    found = detect_format(root)
    if found == "synthetic":
        return (f"{root} is a make-synthetic output: open {root / 'idda'} as 'idda' "
                f"or {root / 'camvid'} as 'camvid'.")
    if found and found != wanted:
        return f"{root} looks like the '{found}' layout: use format '{found}'."
    return ""


class SegmentationDataset(Dataset):
    """Images paired with label files; subclasses say how a label maps to class ids.

    Unknown colours or ids become Background; the first file that has any is named in
    one warning per dataset, and all are counted in `unknown_pixels` (per process: each
    DataLoader worker counts its own).
    """

    kind = "dataset"  # used in messages

    def __init__(self, names: list[str], image_paths: dict[str, Path], label_paths: dict[str, Path],
                 transform: Callable | None = None, limit: int = 0, with_labels: bool = True):
        if limit:
            names = names[:limit]
        self.names = names
        self.image_paths = image_paths
        self.label_paths = label_paths
        self.transform = transform
        self.with_labels = with_labels
        self.unknown_pixels = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self.names)

    def keep(self, sequences: Sequence[str] = (), limit: int = 0) -> None:
        """Restrict to frames of `sequences` (if any), then to the first `limit` (if > 0)."""
        if sequences:
            wanted = set(sequences)
            names = [n for n in self.names if sequence_of(n) in wanted]
            if not names:
                present = sorted({sequence_of(n) for n in self.names})
                raise DatasetFormatError(
                    f"no frame of sequence(s) {', '.join(sorted(wanted))} in this {self.kind} "
                    f"split; it holds: {', '.join(present)}")
            self.names = names
        if limit:
            self.names = self.names[:limit]

    def read_label(self, path: Path) -> tuple[np.ndarray, int]:
        """(HxW uint8 class ids, number of unknown pixels)."""
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The untransformed pair: uint8 RGB image, uint8 class ids (or None without labels)."""
        name = self.names[index]
        image = read_rgb(self.image_paths[name])
        if not self.with_labels:
            return image, None
        path = self.label_paths[name]
        label, unknown = self.read_label(path)
        if label.shape != image.shape[:2]:
            raise DatasetFormatError(
                f"label {path} is {label.shape[1]}x{label.shape[0]} but image "
                f"{self.image_paths[name]} is {image.shape[1]}x{image.shape[0]}; they must match"
            )
        if unknown:
            self.count_unknown(path, unknown)
        return image, label

    def count_unknown(self, path: Path, n: int) -> None:
        self.unknown_pixels += n
        if not self._warned:
            self._warned = True
            log.warning("%s: %d pixels with a %s not in the %s label table were mapped to "
                        "Background; later ones in this dataset are only counted (unknown_pixels)",
                        path, n, self.unknown_what, self.kind)

    unknown_what = "value"

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        if self.transform is not None:
            reseed = getattr(self.transform, "reseed", None)
            if reseed is not None:
                reseed(index)  # per-sample randomness: same index + epoch -> same augmentation
            image, label = self.transform(image, label)
        item = {"image": image, "name": self.names[index]}
        if label is not None:
            item["label"] = label
        return item


def _innermost(dataset: Dataset) -> list[Dataset]:
    """The datasets under Subset / ConcatDataset wrappers."""
    if isinstance(dataset, torch.utils.data.Subset):
        return _innermost(dataset.dataset)
    if isinstance(dataset, torch.utils.data.ConcatDataset):
        return [d for sub in dataset.datasets for d in _innermost(sub)]
    return [dataset]


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell every seeded transform under `dataset` the epoch (changes its augmentations)."""
    for ds in _innermost(dataset):
        fn = getattr(getattr(ds, "transform", None), "set_epoch", None)
        if fn is not None:
            fn(epoch)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed `random`, numpy and unseeded transforms per worker.

    Transforms built with a seed do not need it (their randomness comes from the seed,
    the epoch and the sample index), but third-party code that draws from numpy's global
    generator would otherwise repeat the same numbers in every worker.
    """
    import random

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        for ds in _innermost(info.dataset):
            fn = getattr(getattr(ds, "transform", None), "reseed_stream", None)
            if fn is not None:
                fn(seed)


def sequence_of(name: str) -> str:
    """The sequence a frame belongs to: CamVid's '0016E5_07959' -> '0016E5'."""
    return name.split("_", 1)[0]


def build_dataset(fmt: str, root: str | Path, split: str | list[str], transform=None,
                  limit: int = 0, with_labels: bool = True,
                  sequences: Sequence[str] = ()) -> Dataset:
    """Open a dataset folder in one of FORMATS, or 'auto' to read the layout off the folder.

    `split` is a name, a list of names, or 'a+b'. CamVid has train/val/test; IDDA uses
    optional `<split>.txt` stem lists in its root, and 'train' or 'all' without one means
    every file. `sequences` keeps only frames of those sequences (the part of the name
    before the first '_', e.g. CamVid's 0001TP); empty keeps all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder not found: {root}")
    fmt = resolve_format(fmt, root)
    splits = [split] if isinstance(split, str) else list(split)
    splits = [s for part in splits for s in part.split("+") if s]
    if fmt in ("camvid", "camvid_segnet"):
        from uda_seg_core.data.camvid import CamVid

        layout = "colour" if fmt == "camvid" else "segnet"
        dataset = CamVid(root, splits, layout=layout, transform=transform,
                         with_labels=with_labels)
    else:
        from uda_seg_core.data.idda import IDDA

        dataset = IDDA(root, splits, transform=transform, with_labels=with_labels)
    dataset.keep(sequences, limit)
    return dataset


def has_split(fmt: str, root: str | Path, split: str) -> bool:
    """Whether `split` exists in the folder (checked before a run needs it)."""
    try:
        build_dataset(fmt, root, split, with_labels=True)
    except DatasetFormatError:
        return False
    return True
