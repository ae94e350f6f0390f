"""What every dataset loader shares: the error type, file pairing and reading, and the
`SegmentationDataset` base class (images paired with label files, sequence filters).

Formats (camvid.py, idda.py, folder.py) subclass `SegmentationDataset` and say how a label
file maps to train ids, through the map of their format in the dataset's label set
(`labels.LabelSet`; the paper's 12 classes unless one is given);
`uda_seg_core.data.build_dataset` opens a folder in any of them.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from uda_seg_core.labels import LabelSet, camvid12

log = logging.getLogger(__name__)

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


def read_split_list(path: Path) -> list[str]:
    """A `<split>.txt` stem list: one stem or file name per line, '#' comments."""
    return [Path(line.strip()).stem for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def sequence_of(name: str) -> str:
    """The sequence a frame belongs to: CamVid's '0016E5_07959' -> '0016E5'."""
    return name.split("_", 1)[0]


def parse_sequence_part(spec: str) -> tuple[str, int, int]:
    """'0001TP' -> ('0001TP', 1, 1): the whole sequence; '0001TP:2/3' -> the second of three
    consecutive parts of its frames in time order (a drive split by time: adapt on one part,
    evaluate on another that training never touched)."""
    name, sep, part = spec.partition(":")
    if not sep:
        return spec, 1, 1
    try:
        k, n = (int(v) for v in part.split("/"))
    except ValueError:
        k = n = 0
    if not (name and 1 <= k <= n):
        raise DatasetFormatError(f"sequence {spec!r}: write NAME or NAME:K/N (part K of N in "
                                 f"time order, 1 <= K <= N), e.g. 0001TP:1/2")
    return name, k, n


def select_sequences(names: Sequence[str], specs: Sequence[str]) -> list[str]:
    """The frames of `names` that the sequence specs (`parse_sequence_part`) select, in
    their given order. A part is cut from the sequence's frames in natural (time) order."""
    chosen: set[str] = set()
    for spec in specs:
        sequence, k, n = parse_sequence_part(spec)
        frames = sorted((f for f in names if sequence_of(f) == sequence), key=natural_key)
        start, stop = (len(frames) * (k - 1)) // n, (len(frames) * k) // n
        chosen.update(frames[start:stop])
    return [f for f in names if f in chosen]


class SegmentationDataset(Dataset):
    """Images paired with label files; subclasses say how a label maps to class ids.

    Colours or ids the label set's map does not list become its fallback (Background for
    the paper's set); the first file that has any is named in one warning per dataset, and
    all are counted in `unknown_pixels` (per process: each DataLoader worker counts its own).
    """

    kind = "dataset"  # used in messages
    fallback = "Background"  # what unknown colours or ids become, in words

    def __init__(self, names: list[str], image_paths: dict[str, Path], label_paths: dict[str, Path],
                 transform: Callable | None = None, limit: int = 0, with_labels: bool = True,
                 label_set: LabelSet | None = None):
        if limit:
            names = names[:limit]
        self.names = names
        self.image_paths = image_paths
        self.label_paths = label_paths
        self.transform = transform
        self.with_labels = with_labels
        self.label_set = label_set or camvid12()  # the classes its labels are mapped to
        self.unknown_pixels = 0
        self._warned = False

    def __len__(self) -> int:
        return len(self.names)

    def keep(self, sequences: Sequence[str] = (), limit: int = 0) -> None:
        """Restrict to frames of `sequences` (if any; NAME or NAME:K/N, `select_sequences`),
        then to the first `limit` (if > 0)."""
        if sequences:
            names = select_sequences(self.names, sequences)
            if not names:
                present = sorted({sequence_of(n) for n in self.names})
                raise DatasetFormatError(
                    f"no frame of sequence(s) {', '.join(sorted(sequences))} in this "
                    f"{self.kind} split; it holds: {', '.join(present)}")
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
                        "%s; later ones in this dataset are only counted (unknown_pixels)",
                        path, n, self.unknown_what, self.kind, self.fallback)

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
