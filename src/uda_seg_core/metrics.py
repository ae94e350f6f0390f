"""Segmentation metrics from one confusion matrix: pixel accuracy, per-class IoU, mIoU.

Shared by training-time validation, `uda-seg evaluate`, the pruning sweep, the benchmark and
the rosbag evaluator: `evaluate_model(model, dataset, device)` is the measurement. Rows are
ground truth, columns predictions; pixels whose label is `ignore_index` are not counted. The
headline mIoU is over the label set's headline classes: for the paper's set the 11 named
classes (Background excluded), for a user's set all classes unless it names some;
`miou_all` (`miou_12` in summaries, the historic key) is over every class. A class absent
from both the predictions and the labels has IoU NaN and is left out of the means
(nanmean). `evaluate_model` takes the class names and headline classes from the label set
of the dataset it measures on (`dataset.label_set`).

    cm = ConfusionMatrix()
    for images, labels in loader:
        cm.update(model(images, aux_mode="pred"), labels)
    cm.all_reduce()          # under torchrun; a no-op otherwise
    print(cm.table()); json.dump(cm.summary(), f)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm import tqdm

from uda_seg_core.labels import (
    CLASS_NAMES,
    IGNORE_INDEX,
    NAMED_CLASSES,
    NUM_CLASSES,
    LabelSet,
)
from uda_seg_core.reporting import markdown_table


def _as_tensor(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"ConfusionMatrix.update: {what} must be a torch.Tensor or numpy array, got "
            f"{type(x).__name__}"
        )
    if x.is_floating_point():
        raise TypeError(f"ConfusionMatrix.update: {what} must hold integer class ids, "
                        f"got {x.dtype}")
    return x.reshape(-1).long()


class ConfusionMatrix:
    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        class_names: Sequence[str] | None = None,
        headline: Sequence[int] | None = None,
    ):
        """`headline`: the classes `miou()` averages (default: the 11 named classes of a
        12-class matrix, else all)."""
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if class_names is None:
            class_names = (CLASS_NAMES if num_classes == NUM_CLASSES
                           else [str(i) for i in range(num_classes)])
        if len(class_names) != num_classes:
            raise ValueError(f"ConfusionMatrix: {len(class_names)} class names for {num_classes} "
                             f"classes")
        self.class_names = tuple(class_names)
        if headline is None:
            headline = NAMED_CLASSES if num_classes == NUM_CLASSES else range(num_classes)
        self.headline = tuple(int(c) for c in headline)
        if not self.headline or not all(0 <= c < num_classes for c in self.headline):
            raise ValueError(f"ConfusionMatrix: headline classes {list(headline)} are not a "
                             f"non-empty subset of 0..{num_classes - 1}")
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @classmethod
    def for_label_set(cls, labels: LabelSet) -> ConfusionMatrix:
        """A matrix over a label set's classes, its names and headline classes."""
        return cls(labels.num_classes, labels.ignore_index, labels.names, labels.headline)

    def reset(self) -> None:
        self.mat.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Count one batch of predicted ids against label ids (any equal shapes)."""
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(
                f"ConfusionMatrix.update: prediction shape {tuple(pred.shape)} != label shape "
                f"{tuple(target.shape)} (pass class ids, e.g. logits.argmax(1), not logits)"
            )
        pred, target = _as_tensor(pred, "pred"), _as_tensor(target, "target")
        pred = pred.to(target.device)
        n = self.num_classes
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        for what, ids in (("label", target), ("prediction", pred)):
            bad = (ids < 0) | (ids >= n)
            if bad.any():
                raise ValueError(
                    f"ConfusionMatrix.update: {what} ids "
                    f"{sorted(set(ids[bad].unique().tolist()))[:10]} are outside 0..{n - 1} and "
                    f"not ignore_index={self.ignore_index}"
                )
        counts = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        if self.mat.device != counts.device:
            self.mat = self.mat.to(counts.device)
        self.mat += counts

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class "
                f"one"
            )
        self.mat += other.mat.to(self.mat.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrices of all processes (torch.distributed); a no-op when not initialised.

        Under the nccl backend the matrix must be on the process's GPU, which it is when
        the updates were GPU tensors.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)
        return self

    @property
    def pixel_accuracy(self) -> float:
        total = self.mat.sum().item()
        return self.mat.diag().sum().item() / total if total else math.nan

    @property
    def iou(self) -> torch.Tensor:
        """Per-class IoU, float64 (num_classes,); NaN where a class is in neither pred nor gt."""
        mat = self.mat.double().cpu()
        tp = mat.diag()
        union = mat.sum(0) + mat.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    def miou(self, classes: Sequence[int] | None = None) -> float:
        """Mean IoU over `classes` (default: the headline classes), NaNs left out."""
        if classes is None:
            classes = self.headline
        values = self.iou[list(classes)]
        return values.nanmean().item() if not values.isnan().all() else math.nan

    @property
    def miou_all(self) -> float:
        return self.miou(range(self.num_classes))

    def summary(self) -> dict:
        """JSON-ready: NaN (undefined) becomes None."""
        return {
            "accuracy": _json_float(self.pixel_accuracy),
            "miou": _json_float(self.miou()),
            "miou_12": _json_float(self.miou_all),
            "per_class_iou": {name: _json_float(v)
                              for name, v in zip(self.class_names, self.iou.tolist())},
            "pixels": int(self.mat.sum().item()),
        }

    def table(self) -> str:
        """Markdown table: per-class IoU, then mIoU (headline), mIoU (all), pixel accuracy."""
        return summary_table(self.summary())


def summary_table(summary: dict) -> str:
    """The markdown table of a `ConfusionMatrix.summary()` (as stored in metrics.json)."""
    iou = summary["per_class_iou"]
    rows = [[name, _fmt(value)] for name, value in iou.items()]
    rows += [["**mIoU (named classes)**", _fmt(summary["miou"])],
             [f"**mIoU (all {len(iou)})**", _fmt(summary["miou_12"])],
             ["**pixel accuracy**", _fmt(summary["accuracy"])]]
    return markdown_table(["class", "IoU"], rows)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _logits_of(output) -> torch.Tensor:
    """Logits from any output mode: the main head of a train-mode tuple, or the tensor."""
    return output[0] if isinstance(output, (tuple, list)) else output


def predict_ids(model: nn.Module, images: torch.Tensor, size: tuple[int, int] | None = None,
                amp: bool = False) -> torch.Tensor:
    """Class ids (N, H, W) for a normalised batch; logits are resized to `size` (the label's)
    when the network's output differs from it."""
    with torch.autocast(device_type=images.device.type, dtype=torch.float16,
                        enabled=amp and images.device.type == "cuda"):
        out = _logits_of(model(images))
    if not out.is_floating_point():  # a model in 'pred' mode already returns ids
        out = out.long()
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return out
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
    return out.argmax(dim=1)


def dataset_label_set(dataset: Dataset) -> LabelSet | None:
    """The label set a dataset's labels are in (under Subset / ConcatDataset wrappers)."""
    while isinstance(dataset, (Subset, ConcatDataset)):
        dataset = dataset.dataset if isinstance(dataset, Subset) else dataset.datasets[0]
    labels = getattr(dataset, "label_set", None)
    return labels if isinstance(labels, LabelSet) else None


def matrix_for(dataset: Dataset, num_classes: int) -> ConfusionMatrix:
    """A matrix over the classes of `dataset`'s label set where it has `num_classes`
    classes (its names, its headline classes); else a plain `num_classes` one."""
    labels = dataset_label_set(dataset)
    if labels is not None and labels.num_classes == num_classes:
        return ConfusionMatrix.for_label_set(labels)
    return ConfusionMatrix(num_classes)


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: Dataset, device: str | torch.device,
                   batch_size: int = 1, num_workers: int = 0, distributed: bool = False,
                   amp: bool = False, channels_last: bool = False, num_classes: int | None = None,
                   progress: bool = False) -> ConfusionMatrix:
    """Confusion matrix of `model` (eval mode) over a labelled `dataset` of transformed items.

    Under torchrun with `distributed=True` each rank measures every world_size-th image
    and the matrices are summed, so every image counts exactly once. The model's
    train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    if num_classes is None:
        labels = dataset_label_set(dataset)
        num_classes = int(getattr(model, "num_classes", None)
                          or (labels.num_classes if labels else NUM_CLASSES))
    cm = matrix_for(dataset, num_classes)
    cm.mat = cm.mat.to(device)  # nccl reduces GPU tensors; an empty shard must match
    if distributed and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        dataset = Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if progress:
        loader = tqdm(loader, desc="evaluate", dynamic_ncols=True)
    try:
        for batch in loader:
            if "label" not in batch:
                raise ValueError("evaluate_model needs labelled items; this dataset was opened "
                                 "without labels")
            images = batch["image"].to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = batch["label"].to(device)
            cm.update(predict_ids(model, images, tuple(labels.shape[-2:]), amp), labels)
    finally:
        model.train(was_training)
    if distributed:
        cm.all_reduce()
    return cm

