"""Terms on the target predictions that adaptation adds beside (or instead of) L_adv.

    adapt.target_loss: none | entropy | pseudo_label     (adapt.target_weight: its weight)

- entropy: ADVENT's MinEnt (Vu et al., CVPR 2019): the normalised entropy of the target
  softmax, minimised. No labels, no discriminator.
- pseudo_label: self-training. A frozen teacher (`adapt.teacher`, by default the
  `train.init_from` network: source only for a first round, a first round's result for a
  second) labels each target crop the
  student sees; only its confident pixels are trusted, with one threshold per class so
  rare classes keep pixels too (class-balanced, after CBST, Zou et al., ECCV 2018): the
  threshold of class c is the `adapt.pseudo_label_quantile` quantile (0.5: the median)
  of the teacher's confidence over the target frames' pixels it predicts as c, measured
  once before training on the adaptation frames (evaluation transform: whole frames).

`TARGET_LOSSES` is the registry behind `adapt.target_loss` (config.TargetLossName).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from uda_seg_core.config import Config, ConfigError, input_normalisation
from uda_seg_core.data import build_dataset, eval_transform
from uda_seg_core.labels import IGNORE_INDEX
from uda_seg_core.losses import cross_entropy_loss, entropy_loss
from uda_seg_core.models import load_model

TARGET_LOSSES = ("none", "entropy", "pseudo_label")
THRESHOLD_SAMPLES = 200_000  # pixels per class kept to estimate its confidence quantile


class PseudoLabeller:
    """A frozen teacher and its per-class confidence thresholds: target crops -> labels
    (IGNORE_INDEX where the teacher is not confident enough)."""

    def __init__(self, teacher: nn.Module, thresholds: torch.Tensor):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.thresholds = thresholds

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(self.teacher(images, aux_mode="eval").float(), dim=1)
        confidence, labels = probs.max(dim=1)
        trusted = confidence >= self.thresholds.to(images.device)[labels]
        return torch.where(trusted, labels, torch.full_like(labels, IGNORE_INDEX))

    def to(self, device: torch.device) -> PseudoLabeller:
        self.teacher.to(device)
        return self


@torch.no_grad()
def class_thresholds(teacher: nn.Module, frames: Dataset, num_classes: int, quantile: float,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Per class, the `quantile` of the teacher's top probability over the pixels it assigns
    to that class on `frames` (items with 'image'); a class it never predicts gets 1.0
    (nothing trusted). Pixels are subsampled evenly so memory stays bounded."""
    if not 0.0 <= quantile < 1.0:
        raise ConfigError(f"adapt.pseudo_label_quantile must be in [0, 1), got {quantile}")
    teacher.eval()
    per_class: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    for index in range(len(frames)):
        image = frames[index]["image"][None].to(device)
        confidence, labels = F.softmax(teacher(image, aux_mode="eval").float(), 1).max(1)
        for c in range(num_classes):
            values = confidence[labels == c]
            if values.numel():
                per_class[c].append(values[:: max(1, values.numel() // 20_000)].cpu())
    thresholds = torch.ones(num_classes)
    for c, chunks in enumerate(per_class):
        if chunks:
            values = torch.cat(chunks)
            values = values[:: max(1, values.numel() // THRESHOLD_SAMPLES)]
            thresholds[c] = torch.quantile(values, quantile)
    return thresholds


def build_pseudo_labeller(cfg: Config, device: torch.device) -> PseudoLabeller:
    """The teacher (`adapt.teacher`, else `train.init_from`) and its thresholds on the
    adaptation frames."""
    source = cfg.adapt.teacher or cfg.train.init_from
    if not source:
        raise ConfigError("adapt.target_loss=pseudo_label needs train.init_from (or "
                          "adapt.teacher): the network whose confident target predictions "
                          "become the labels (source only for a first round)")
    teacher, _ = load_model(source)
    teacher.to(device)
    frames = build_dataset(cfg.data.target_format, cfg.data.target_root, cfg.data.train_splits,
                           transform=eval_transform(cfg.data,
                                                    normalisation=input_normalisation(cfg)),
                           with_labels=False, sequences=cfg.data.target_sequences,
                           limit=cfg.data.limit)
    thresholds = class_thresholds(teacher, frames, cfg.model.num_classes,
                                  cfg.adapt.pseudo_label_quantile, device)
    return PseudoLabeller(teacher, thresholds)


def target_term(logits_t: torch.Tensor, images_t: torch.Tensor, cfg: Config,
                labeller: PseudoLabeller | None) -> tuple[torch.Tensor, dict[str, float]]:
    """The unweighted target term of `adapt.target_loss` and what to log of it."""
    kind = cfg.adapt.target_loss
    if kind == "entropy":
        loss = entropy_loss(logits_t)
        return loss, {"entropy": float(loss.detach())}
    if kind == "pseudo_label":
        if labeller is None:
            raise RuntimeError("adapt.target_loss=pseudo_label without a pseudo-labeller")
        labels = labeller(images_t)
        loss = cross_entropy_loss(logits_t, labels)
        trusted = float((labels != IGNORE_INDEX).float().mean())
        return loss, {"pseudo_ce": float(loss.detach()), "pseudo_trusted": trusted}
    raise ValueError(f"unknown adapt.target_loss {kind!r}; choose from {', '.join(TARGET_LOSSES)}")
