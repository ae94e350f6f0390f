"""Training data: each domain's images as an endless, resumable stream of full batches.

    source = source_loader(cfg, dist)          # labelled domain, augmented, seeded
    target = target_loader(cfg, dist)          # unlabelled target images (adaptation)
    source.seek(iteration); batch = source.next()

`LoaderCycle` positions a stream by the global iteration, so a resumed run reads exactly
the batch the uninterrupted one would have read; the shorter domain simply repeats.
`resolve_data` checks the folders and the label set before a run writes anything.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from uda_seg_core.config import Config, ConfigError, input_normalisation
from uda_seg_core.data import (
    build_dataset,
    eval_split,
    has_split,
    resolve_format,
    seed_worker,
    set_epoch,
)
from uda_seg_core.data.transforms import build_transforms
from uda_seg_core.labels import LabelSetError, resolve_label_set
from uda_seg_core.runtime import DistInfo


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (seeded permutation per epoch, one shard per rank) that can
    start an epoch part-way: the first `skip` indices of this rank's shard are dropped,
    which is how a resumed run continues inside an epoch without re-reading images."""

    def __init__(self, dataset: Dataset, dist: DistInfo, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle,
                         seed=seed, drop_last=dist.world_size > 1)
        self.skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class LoaderCycle:
    """Full batches of one domain, epoch after epoch, positioned by a global iteration.

    Iteration i reads batch i mod B of epoch i // B (B = full batches per rank and
    epoch), so `seek(i)` puts a fresh or resumed run at exactly the batch the
    uninterrupted run would read next. Each epoch gets its own sampler permutation and
    tells the dataset's seeded transforms the epoch, so augmentations repeat exactly.
    """

    def __init__(self, dataset: Dataset, batch_size: int, dist: DistInfo, seed: int,
                 num_workers: int = 0, pin_memory: bool = False, name: str = "data"):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.name = name
        self.sampler = ResumableSampler(dataset, dist, shuffle=True, seed=seed)
        self.batches_per_epoch = self.sampler.num_samples // batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"{name}: {len(dataset)} images give no full batch of "
                f"train.batch_size={batch_size} on each of {dist.world_size} process(es); lower "
                f"train.batch_size or use more images (data.limit={len(dataset)}?)"
            )
        # A private generator for worker seeds: the DataLoader would otherwise draw them
        # from the global torch RNG, so a resumed run would shift every later random draw.
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=num_workers, drop_last=True, pin_memory=pin_memory,
                                 worker_init_fn=seed_worker, generator=self.generator)
        self.epoch = 0
        self.position = 0
        self._iterator = None

    def seek(self, iteration: int) -> None:
        self.epoch, self.position = divmod(iteration, self.batches_per_epoch)
        self._iterator = None

    def _start_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.sampler.skip = self.position * self.batch_size
        self.generator.manual_seed(self.seed * 100_003 + self.epoch)
        set_epoch(self.dataset, self.epoch)
        self._iterator = iter(self.loader)

    def next(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._iterator = None
        if self._iterator is None:
            self._start_epoch()
        batch = next(self._iterator)
        self.position += 1
        return batch


def build_train_dataset(cfg: Config, fmt: str, root: str, seed: int, with_labels: bool,
                        sequences: list[str] | None = None) -> Dataset:
    """One domain's training splits, augmented by seeded transforms."""
    transform = build_transforms(cfg.augmentation, cfg.data, train=True, seed=seed,
                                 normalisation=input_normalisation(cfg))
    return build_dataset(fmt, root, cfg.data.train_splits, transform=transform,
                         limit=cfg.data.limit, with_labels=with_labels, sequences=sequences or (),
                         label_set=cfg.data.label_set)


def source_loader(cfg: Config, dist: DistInfo) -> LoaderCycle:
    dataset = build_train_dataset(cfg, cfg.data.source_format, cfg.data.source_root, cfg.train.seed,
                                  with_labels=True, sequences=cfg.data.source_sequences)
    return LoaderCycle(dataset, cfg.train.batch_size, dist, cfg.train.seed, cfg.data.num_workers,
                       pin_memory=torch.cuda.is_available(),
                       name=f"source ({cfg.data.source_root})")


def target_loader(cfg: Config, dist: DistInfo) -> LoaderCycle:
    """Unlabelled target images (train splits), augmented like the source, own seed."""
    seed = cfg.train.seed + 1
    dataset = build_train_dataset(cfg, cfg.data.target_format, cfg.data.target_root, seed,
                                  with_labels=False, sequences=cfg.data.target_sequences)
    return LoaderCycle(dataset, cfg.train.batch_size, dist, seed, cfg.data.num_workers,
                       pin_memory=torch.cuda.is_available(),
                       name=f"target ({cfg.data.target_root})")


def target_split(cfg: Config, split: str) -> Dataset:
    """The labelled target split used for validation ('val') or the final report ('test')."""
    return eval_split(cfg.data, cfg.data.target_root, split, cfg.data.target_format,
                      normalisation=input_normalisation(cfg), limit=cfg.data.limit)


def resolve_run_label_set(cfg: Config) -> None:
    """data.label_set read (a YAML file becomes the set itself, in the config), checked
    against model.num_classes and against the formats whose labels the run reads."""
    d = cfg.data
    try:
        labels = resolve_label_set(d.label_set, cfg.model.num_classes)
        labels.label_map(d.source_format)
        labels.label_map(d.target_format)
    except LabelSetError as exc:
        raise ConfigError(str(exc)) from None
    if not labels.is_preset:
        d.label_set = labels.to_record()


def resolve_data(cfg: Config) -> bool:
    """Before anything is written: read 'auto' formats off the folders (the resolved
    format is what config.yaml records), check that the target val split exists (model
    selection needs it) and say whether the target has a test split. A dataset without
    one (a user's own train/val data, or CamVid with its test split withheld) trains,
    selects on val and reports val; its metrics.json says the test was skipped.

    A label set given as a YAML file is read here and recorded in the config itself, so
    the run's config.yaml and checkpoints carry the classes it trained on."""
    d = cfg.data
    d.source_format = resolve_format(d.source_format, d.source_root)
    d.target_format = resolve_format(d.target_format, d.target_root)
    resolve_run_label_set(cfg)
    if not has_split(d.target_format, d.target_root, d.val_split):
        raise ConfigError(f"data.val_split={d.val_split!r} not found (with labels) in "
                          f"{d.target_root}: model selection needs a labelled target val split")
    if cfg.train.init_from and not Path(cfg.train.init_from).is_file():
        raise ConfigError(f"train.init_from: checkpoint not found: {cfg.train.init_from}")
    if cfg.adapt.target_loss == "pseudo_label" and not cfg.train.init_from:
        raise ConfigError("adapt.target_loss=pseudo_label needs train.init_from: the network "
                          "whose confident target predictions become the labels (source only "
                          "for a first round)")
    if cfg.train.class_balance != "none" and not cfg.train.class_weights:
        cfg.train.class_weights = median_frequency_weights(cfg)
    if cfg.train.class_weights and len(cfg.train.class_weights) != cfg.model.num_classes:
        raise ConfigError(f"train.class_weights holds {len(cfg.train.class_weights)} weights; "
                          f"model.num_classes is {cfg.model.num_classes}")
    return has_split(d.target_format, d.target_root, d.test_split)


def median_frequency_weights(cfg: Config) -> list[float]:
    """Median frequency balancing (Eigen & Fergus; SegNet's CamVid training): the weight of
    class c is median_f / f_c, where f_c is c's pixel count over the pixels of the labelled
    training frames that contain c. A class absent from every frame gets weight 0."""
    d = cfg.data
    frames = build_dataset(d.source_format, d.source_root, d.train_splits, limit=d.limit,
                           sequences=d.source_sequences)
    k = cfg.model.num_classes
    counts, present_pixels = np.zeros(k), np.zeros(k)
    for index in range(len(frames)):
        _, label = frames.load(index)
        hist = np.bincount(label[label < k].ravel(), minlength=k)[:k]
        counts += hist
        present_pixels += (hist > 0) * label.size
    seen = counts > 0
    freq = np.where(seen, counts / np.maximum(present_pixels, 1), 0.0)
    median = float(np.median(freq[seen])) if seen.any() else 1.0
    return [round(float(median / f), 4) if f > 0 else 0.0 for f in freq]
