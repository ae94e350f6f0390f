"""The paper's losses (section III-A): dice (eq. 3), segmentation with two auxiliary terms
(eq. 4), discriminator BCE (eq. 2) and adversarial (eq. 5).

    from uda_seg_core.losses import segmentation_loss, discriminator_loss, adversarial_loss
    total, parts = segmentation_loss(model(images), labels, aux_weight=1.0)
    l_d = (discriminator_loss(d(p_source.detach()), SOURCE_LABEL)
           + discriminator_loss(d(p_target.detach()), TARGET_LABEL))
    l_adv = adversarial_loss(d(p_target))  # the generator wants target judged as source

Domain labels follow DESIGN.md and AdaptSegNet's code: source 0, target 1. The paper's
text under eq. 2 states the opposite convention (z = 1 for source); only the naming
differs, the game is the same, and the code keeps one convention everywhere.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from uda_seg_core.labels import IGNORE_INDEX

SOURCE_LABEL = 0
TARGET_LABEL = 1


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1.0,
    per_class: bool = False,
) -> torch.Tensor:
    """Eq. 3 on softmax(logits) (N, C, H, W) against one-hot(target) (N, H, W).

    Default (the paper's formula): ONE ratio summed over every valid pixel and class of
    the batch, 1 - (2 sum p g + eps) / (sum (p + g) + eps). Since softmax and one-hot
    each sum to 1 per pixel, this equals 1 - mean probability of the true class, so large
    classes (road, sky, building) dominate it. `per_class=True` gives the common variant
    that computes the ratio per class and averages over the classes present, weighting
    small classes equally. Pixels equal to `ignore_index` count in neither sum; a batch
    with no valid pixel gives 0. `eps` smooths the ratio (and keeps it defined).
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"dice_loss: logits must be (N, C, H, W) and target (N, H, W) of the same N, H, W; got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    probs = logits.float().softmax(dim=1)
    valid = (target != ignore_index).unsqueeze(1)  # (N, 1, H, W)
    labels = torch.where(valid.squeeze(1), target, torch.zeros_like(target)).long()
    one_hot = torch.zeros_like(probs).scatter_(1, labels.unsqueeze(1), 1.0) * valid
    probs = probs * valid
    dims = (0, 2, 3) if per_class else (0, 1, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    total = (probs + one_hot).sum(dims)
    dice = (2 * intersection + eps) / (total + eps)
    if per_class:
        present = one_hot.sum((0, 2, 3)) > 0
        if not present.any():
            return (1 - dice).sum() * 0  # keeps the graph, value 0
        return 1 - dice[present].mean()
    return 1 - dice


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor,
                       ignore_index: int = IGNORE_INDEX,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross entropy (ignored pixels excluded; `weight` per class, normalised
    by the weights of the valid pixels as torch does); 0 when no pixel is valid."""
    if not bool((target != ignore_index).any()):
        return logits.float().sum() * 0
    return F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index,
                           weight=_on(weight, logits))


def _on(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if weight is None else weight.to(device=like.device, dtype=torch.float32)


OHEM_THRESHOLD = 0.7  # a pixel whose true-class probability is below this is "hard"
OHEM_MIN_FRACTION = 1 / 16  # at least this share of the valid pixels is always kept


def ohem_cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor,
                            ignore_index: int = IGNORE_INDEX,
                            weight: torch.Tensor | None = None,
                            threshold: float = OHEM_THRESHOLD,
                            min_fraction: float = OHEM_MIN_FRACTION) -> torch.Tensor:
    """Cross entropy over the hard pixels only (online hard example mining, as BiSeNet's
    authors train it): pixels whose true-class probability is below `threshold`, and at
    least the `min_fraction` of valid pixels with the largest losses. Road and sky pixels
    the network already gets right stop diluting the gradient of poles and signs. With a
    class `weight`, each pixel's loss is weighted before the hard ones are chosen."""
    losses = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index,
                             weight=_on(weight, logits), reduction="none").flatten()
    valid = (target != ignore_index).flatten()
    if not bool(valid.any()):
        return logits.float().sum() * 0
    losses = losses[valid]
    keep = max(1, int(min_fraction * losses.numel()))
    if weight is not None:  # the threshold is on the unweighted loss (the probability)
        plain = F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index,
                                reduction="none").flatten()[valid]
        hard = losses[plain > -math.log(threshold)]
    else:
        hard = losses[losses > -math.log(threshold)]
    if hard.numel() < keep:
        hard = losses.topk(keep).values
    return hard.mean()


def _dice(logits, target, ignore_index, weight=None):
    return dice_loss(logits, target, ignore_index)


def _dice_per_class(logits, target, ignore_index, weight=None):
    return dice_loss(logits, target, ignore_index, per_class=True)


def _ce_plus_dice(logits, target, ignore_index, weight=None):
    return (cross_entropy_loss(logits, target, ignore_index, weight)
            + dice_loss(logits, target, ignore_index, per_class=True))


# train.loss -> the per-output term of eq. 4. 'dice' is the paper's eq. 3 as written; the
# others are for training from random init on real data, where the literal dice (= 1 - the
# mean true-class probability) leaves thin classes (poles, signs, bicyclists) unlearnt.
SEGMENTATION_LOSSES = {
    "dice": _dice,  # class weights do not apply to the dice terms
    "dice_per_class": _dice_per_class,
    "ce": cross_entropy_loss,
    "ce+dice": _ce_plus_dice,  # cross entropy + per-class dice
    "ohem": ohem_cross_entropy_loss,  # cross entropy on the hard pixels
}


def segmentation_loss(
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    aux_weight: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    loss: str = "dice",
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4: term(main) + alpha * (term(aux16) + term(aux32)), the term being dice (eq. 3)
    unless `loss` names another entry of SEGMENTATION_LOSSES.

    `outputs` is BiSeNet's train-mode tuple (main, aux16, aux32), or a bare logits tensor
    (then only the main term). Returns the total and its parts, detached, for logging
    (call .item() when logging, not every step, to avoid GPU syncs); the parts are named
    after the term ('dice_main', 'ce_aux16', ...).
    """
    if loss not in SEGMENTATION_LOSSES:
        raise ValueError(f"unknown segmentation loss {loss!r}; choose from "
                         f"{', '.join(SEGMENTATION_LOSSES)}")
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    names = tuple(f"{loss.replace('+', '_')}_{head}" for head in ("main", "aux16", "aux32"))
    if len(outputs) > len(names):
        raise ValueError(
            f"segmentation_loss: expected at most 3 outputs (main, aux16, aux32), got "
            f"{len(outputs)}"
        )
    term = SEGMENTATION_LOSSES[loss]
    terms = [term(out, target, ignore_index, class_weights) for out in outputs]
    total = terms[0] + aux_weight * sum(terms[1:], torch.zeros_like(terms[0]))
    parts = {name: term.detach() for name, term in zip(names, terms)}
    parts["seg"] = total.detach()
    return total, parts


def discriminator_loss(d_logits: torch.Tensor, domain_label: int) -> torch.Tensor:
    """Eq. 2: BCE-with-logits of D's map against a constant map of `domain_label`.

    Averaged over the map (eq. 2 sums over h, w); the mean is what AdaptSegNet uses and
    what lambda_adv = 0.001 was tuned with.
    """
    return F.binary_cross_entropy_with_logits(d_logits,
                                              torch.full_like(d_logits, float(domain_label)))


def adversarial_loss(d_logits_target: torch.Tensor,
                     source_label: int = SOURCE_LABEL) -> torch.Tensor:
    """Eq. 5: the segmentation network fools D when target predictions are judged source."""
    return discriminator_loss(d_logits_target, source_label)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per pixel over the classes, averaged over the pixels: how far
    a pruned network's softmax is from the unpruned one's (knowledge distillation)."""
    log_p_s = F.log_softmax(student_logits.float(), dim=1)
    log_p_t = F.log_softmax(teacher_logits.float(), dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT's MinEnt term: the mean over pixels of the softmax entropy, divided by
    log(C) so it lies in [0, 1]. Minimising it on target frames pushes the network to be
    as confident there as it is on the labelled domain."""
    log_p = F.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return entropy.mean() / math.log(logits.shape[1])
