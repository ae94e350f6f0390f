"""Dice (eq. 3), segmentation (eq. 4), discriminator (eq. 2) and adversarial (eq. 5) losses
against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from uda_seg_core.losses import (
    SOURCE_LABEL,
    TARGET_LABEL,
    adversarial_loss,
    dice_loss,
    discriminator_loss,
    segmentation_loss,
)


def confident_logits(labels: torch.Tensor, num_classes: int = 12,
                     margin: float = 50.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * margin


@pytest.fixture
def labels():
    torch.manual_seed(0)
    return torch.randint(0, 12, (2, 8, 10))


def test_labels_are_designs_convention():
    assert (SOURCE_LABEL, TARGET_LABEL) == (0, 1)


def test_dice_perfect_prediction_is_zero_and_wrong_is_large(labels):
    assert dice_loss(confident_logits(labels), labels).item() == pytest.approx(0.0, abs=1e-6)
    wrong = confident_logits((labels + 1) % 12)
    assert dice_loss(wrong, labels).item() == pytest.approx(1.0, abs=0.01)  # eps keeps it below 1
    uniform = torch.zeros(2, 12, 8, 10)
    assert 0.5 < dice_loss(uniform, labels).item() < 1.0


def test_dice_equals_eq3_by_hand():
    # 2 pixels, 2 classes: softmax rows p = (0.5, 0.5) and (e/(1+e), 1/(1+e)); labels 0, 1.
    logits = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    p1 = 1 / (1 + math.e)
    intersection = 0.5 + p1
    total = 2 + 2  # sum of p (1 per pixel) + sum of g (1 per pixel)
    expected = 1 - (2 * intersection + 1.0) / (total + 1.0)
    assert dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert dice_loss(logits, target,
                     eps=0.0).item() == pytest.approx(1 - 2 * intersection / total, rel=1e-6)


def test_dice_ignores_ignore_index_pixels(labels):
    logits = confident_logits(labels)
    corrupted = labels.clone()
    corrupted[:, :4] = 255
    logits_wrong_there = logits.clone()
    logits_wrong_there[:, :, :4] = confident_logits((labels + 1) % 12)[:, :, :4]
    # Wrong predictions under ignored pixels do not count.
    assert dice_loss(logits_wrong_there, corrupted).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(logits_wrong_there, labels).item() > 0.3
    all_ignored = torch.full_like(labels, 255)
    assert dice_loss(logits_wrong_there, all_ignored).item() == 0.0


def test_dice_per_class_weights_small_classes(labels):
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, 0] = 1  # one pixel of class 1
    pred = confident_logits(torch.zeros_like(target), num_classes=2)  # misses it
    assert dice_loss(pred, target).item() < 0.01
    assert dice_loss(pred, target, per_class=True).item() > 0.2
    # Without smoothing: class 0 dice ~ 198/199, class 1 dice 0 -> loss ~ 0.5.
    assert dice_loss(pred, target, eps=0.0, per_class=True).item() == pytest.approx(0.5, abs=0.01)


def test_dice_has_gradient_and_rejects_bad_shapes(labels):
    logits = torch.randn(2, 12, 8, 10, requires_grad=True)
    dice_loss(logits, labels).backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="target"):
        dice_loss(logits, labels[:, :4])


def test_segmentation_loss_is_main_plus_alpha_aux(labels):
    torch.manual_seed(1)
    outputs = tuple(torch.randn(2, 12, 8, 10) for _ in range(3))
    terms = [dice_loss(o, labels).item() for o in outputs]
    total, parts = segmentation_loss(outputs, labels)
    assert total.item() == pytest.approx(sum(terms), rel=1e-6)
    total_half, _ = segmentation_loss(outputs, labels, aux_weight=0.5)
    assert total_half.item() == pytest.approx(terms[0] + 0.5 * (terms[1] + terms[2]), rel=1e-6)
    assert parts["dice_main"].item() == pytest.approx(terms[0])
    assert parts["dice_aux32"].item() == pytest.approx(terms[2])
    assert parts["seg"].item() == pytest.approx(total.item())
    assert not parts["seg"].requires_grad
    single, single_parts = segmentation_loss(outputs[0], labels)
    assert single.item() == pytest.approx(terms[0]) and set(single_parts) == {"dice_main", "seg"}


def bce(logit: float, label: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_discriminator_and_adversarial_losses_by_hand():
    d_logits = torch.tensor([2.0, -1.0, 0.5, 0.0]).reshape(1, 1, 2, 2)
    values = d_logits.flatten().tolist()
    for label in (SOURCE_LABEL, TARGET_LABEL):
        expected = sum(bce(v, label) for v in values) / 4
        assert discriminator_loss(d_logits, label).item() == pytest.approx(expected, rel=1e-6)
    # The generator wants target predictions judged as source (label 0).
    expected_adv = sum(bce(v, 0) for v in values) / 4
    assert adversarial_loss(d_logits).item() == pytest.approx(expected_adv, rel=1e-6)
    confident_source = torch.full((1, 1, 2, 2), -20.0)
    assert adversarial_loss(confident_source).item() < 1e-6
    assert discriminator_loss(confident_source, TARGET_LABEL).item() > 19


def test_segmentation_loss_choices_name_their_terms_and_ignore_padding():
    """train.loss picks the term of eq. 4; padding (255) never counts. Bug guarded: a
    cross entropy that counted padded pixels as class 255 (or crashed on them)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 8, 8, requires_grad=True)
    labels = torch.randint(0, 12, (2, 8, 8))
    padded = labels.clone()
    padded[:, :, 6:] = 255
    for name in ("dice", "dice_per_class", "ce", "ce+dice"):
        total, parts = segmentation_loss((logits, logits, logits), padded, loss=name)
        assert f"{name.replace('+', '_')}_aux32" in parts and torch.isfinite(total)
        total.backward()
    ce, _ = segmentation_loss(logits, padded, loss="ce")
    expected = torch.nn.functional.cross_entropy(logits[..., :6], labels[..., :6])
    assert ce.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="unknown segmentation loss 'focal'"):
        segmentation_loss(logits, labels, loss="focal")


def test_ohem_ignores_easy_pixels_and_keeps_a_minimum():
    from uda_seg_core.losses import ohem_cross_entropy_loss

    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 0] = 10.0  # every pixel right and confident: easy
    logits[0, :, 0, 0] = torch.tensor([0.0, 5.0, 0.0])  # one pixel wrong: hard
    hard_only = torch.nn.functional.cross_entropy(logits[:, :, :1, :1], target[:, :1, :1])
    # the 15 easy pixels would dilute the mean 16x; OHEM averages the hard one alone
    assert ohem_cross_entropy_loss(logits, target).item() == pytest.approx(hard_only.item())
    # with no hard pixel, the top 1/16 (here: one pixel) is still trained on
    logits[0, :, 0, 0] = torch.tensor([10.0, 0.0, 0.0])
    assert ohem_cross_entropy_loss(logits, target).item() > 0
    target[:] = 255
    assert ohem_cross_entropy_loss(logits, target).item() == 0.0


def test_class_weights_reach_every_cross_entropy_term():
    from uda_seg_core.losses import segmentation_loss

    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    weights = torch.tensor([1.0, 5.0, 0.5])
    for name in ("ce", "ohem", "ce+dice"):
        plain, _ = segmentation_loss((logits,) * 3, target, loss=name)
        weighted, _ = segmentation_loss((logits,) * 3, target, loss=name, class_weights=weights)
        assert weighted.item() != pytest.approx(plain.item()), name
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    single, _ = segmentation_loss(logits, target, loss="ce", class_weights=weights)
    assert single.item() == pytest.approx(expected.item())
