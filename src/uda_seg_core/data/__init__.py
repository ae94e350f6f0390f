"""Datasets in their real on-disk formats, and the pieces every loader shares.

    from uda_seg_core.data import build_dataset
    ds = build_dataset("camvid", "data/CamVid", ["train", "val"])      # 960x720 colour labels
    ds = build_dataset("camvid_segnet", "data/SegNet-CamVid", "test")  # 360x480 integer labels
    ds = build_dataset("idda", "data/IDDA", "all")                     # rgb/ + labels/ (RGBA)
    ds = build_dataset("folder", "data/mine", "train", label_set="mine.yaml")  # images/ + labels/
    item = ds[0]   # {'image': HxWx3 uint8 RGB, 'label': HxW uint8 class ids 0-11, 'name': str}

Labels are train ids of a label set (`labels.LabelSet`: `label_set` is one, 'camvid12',
a YAML path or a record; default the paper's 12 classes); `ds.label_set` says which.

With a transform (`data.transforms.build_transforms`) an item holds a normalised float32
3xHxW image tensor and an int64 HxW label tensor. With `with_labels=False` (the unlabelled
target domain) items have no 'label' and label files are not required.

    ds = eval_split(cfg.data, "data/CamVid", "test",        # as a network is measured on it
                    normalisation=input_normalisation(cfg))

`DATASETS` maps each format to its loader (camvid.py, idda.py, folder.py); formats.py
reads the layout of a folder ('auto'); base.py holds what every loader shares.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from uda_seg_core.config import AugmentationConfig, DataConfig, Normalisation
from uda_seg_core.data.base import (
    IMAGE_SUFFIXES,
    DatasetFormatError,
    SegmentationDataset,
    natural_key,
    read_rgb,
    sequence_of,
)
from uda_seg_core.data.camvid import CamVid
from uda_seg_core.data.folder import Folder
from uda_seg_core.data.formats import (
    FORMAT_CHOICES,
    FORMATS,
    detect_format,
    detect_formats,
    resolve_format,
)
from uda_seg_core.data.idda import IDDA
from uda_seg_core.data.transforms import JointTransform, build_transforms
from uda_seg_core.labels import LabelSet, resolve_label_set

# format -> loader(root, splits, transform=, with_labels=, label_set=); the names are
# config.DatasetFormat's (and labels.LABEL_FORMATS: a label set maps each)
DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "camvid": functools.partial(CamVid, layout="colour"),
    "camvid_segnet": functools.partial(CamVid, layout="segnet"),
    "idda": IDDA,
    "folder": Folder,
}

__all__ = [
    "DATASETS", "FORMATS", "FORMAT_CHOICES", "IMAGE_SUFFIXES", "DatasetFormatError",
    "SegmentationDataset", "build_dataset", "detect_format", "detect_formats", "eval_split",
    "eval_transform", "has_split", "natural_key", "read_rgb", "resolve_format", "seed_worker",
    "sequence_of", "set_epoch",
]


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
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        for ds in _innermost(info.dataset):
            fn = getattr(getattr(ds, "transform", None), "reseed_stream", None)
            if fn is not None:
                fn(seed)


def build_dataset(fmt: str, root: str | Path, split: str | list[str], transform=None,
                  limit: int = 0, with_labels: bool = True,
                  sequences: Sequence[str] = (),
                  label_set: LabelSet | str | dict | None = None) -> Dataset:
    """Open a dataset folder in one of FORMATS, or 'auto' to read the layout off the folder.

    `split` is a name, a list of names, or 'a+b'. CamVid has train/val/test; IDDA uses
    optional `<split>.txt` stem lists in its root, and 'train' or 'all' without one means
    every file (a folder: folder.py). `sequences` keeps only frames of those sequences (the
    part of the name before the first '_', e.g. CamVid's 0001TP); empty keeps all. Labels
    are mapped to the classes of `label_set` (`labels.resolve_label_set`; None: camvid12).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"dataset folder not found: {root}")
    fmt = resolve_format(fmt, root)
    splits = [split] if isinstance(split, str) else list(split)
    splits = [s for part in splits for s in part.split("+") if s]
    dataset = DATASETS[fmt](root, splits, transform=transform, with_labels=with_labels,
                            label_set=resolve_label_set(label_set))
    dataset.keep(sequences, limit)
    return dataset


def has_split(fmt: str, root: str | Path, split: str) -> bool:
    """Whether `split` exists in the folder (checked before a run needs it)."""
    try:
        build_dataset(fmt, root, split, with_labels=True)
    except DatasetFormatError:
        return False
    return True


def eval_transform(data: DataConfig, eval_size: Sequence[int] | None = None, *,
                   normalisation: Normalisation) -> JointTransform:
    """The evaluation preprocessing of a data config: the image resized to `eval_size`
    (default: the config's; [] = the frame's own size), then the network's normalisation."""
    if eval_size is not None:
        data = DataConfig(**{**vars(data), "eval_size": list(eval_size)})
    return build_transforms(AugmentationConfig(), data, train=False, normalisation=normalisation)


def eval_split(data: DataConfig, root: str | Path, split: str, fmt: str = "auto", *,
               normalisation: Normalisation, limit: int = 0, sequences: Sequence[str] = (),
               eval_size: Sequence[int] | None = None) -> Dataset:
    """A labelled split prepared as a network is measured on it (`eval_transform`), its
    labels mapped to `data.label_set`'s classes at their own resolution. The one way every
    job opens an evaluation split."""
    transform = eval_transform(data, eval_size, normalisation=normalisation)
    return build_dataset(fmt, root, split, transform=transform, limit=limit,
                         sequences=sequences, label_set=data.label_set)
