"""ConfusionMatrix against small hand-computed examples; evaluate_model: a perfect predictor
scores 1, a wrong one 0, batches agree."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uda_seg_core.labels import NUM_CLASSES
from uda_seg_core.metrics import ConfusionMatrix, evaluate_model


def test_three_class_example_by_hand():
    cm = ConfusionMatrix(num_classes=3, class_names=["a", "b", "c"])
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 1]])
    cm.update(pred, target)
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert cm.pixel_accuracy == pytest.approx(5 / 7)
    # IoU = tp / (gt + pred - tp): a 1/(2+2-1), b 2/(2+3-2), c 2/(3+2-2)
    assert cm.iou.tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert cm.miou() == pytest.approx(5 / 9)
    assert cm.miou([0, 2]) == pytest.approx(0.5)


def test_a_label_sets_headline_classes_make_the_headline_miou():
    from uda_seg_core.labels import camvid12, parse_label_set

    labels = parse_label_set({"names": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3,
                              "headline": ["a", "c"]}, "test")
    cm = ConfusionMatrix.for_label_set(labels)
    cm.update(torch.tensor([[0, 1, 1, 1], [2, 2, 0, 1]]),
              torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]]))  # the hand example above
    assert cm.miou() == pytest.approx(0.5) and cm.miou_all == pytest.approx(5 / 9)
    assert list(cm.summary()["per_class_iou"]) == ["a", "b", "c"]
    paper = ConfusionMatrix.for_label_set(camvid12())
    assert paper.class_names == ConfusionMatrix().class_names and paper.headline == tuple(range(11))
    with pytest.raises(ValueError, match=r"headline classes \[3\]"):
        ConfusionMatrix(num_classes=3, headline=[3])


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(num_classes=3)
    cm.update(np.array([0, 0, 1]), np.array([0, 1, 1]))
    iou = cm.iou
    assert iou[0].item() == pytest.approx(1 / 2) and iou[1].item() == pytest.approx(1 / 2)
    assert math.isnan(iou[2].item())
    assert cm.miou_all == pytest.approx(0.5)
    # A class predicted but never in the labels has IoU 0, not NaN.
    cm.update(np.array([2]), np.array([0]))
    assert cm.iou[2].item() == 0.0


def test_twelve_classes_headline_excludes_background():
    cm = ConfusionMatrix()  # 12 classes, 11 named
    target = torch.tensor([0, 6, 11, 11])
    pred = torch.tensor([0, 6, 6, 11])
    cm.update(pred, target)
    # Road (6): tp 1, gt 1, pred 2 -> 0.5; Background (11): tp 1, gt 2, pred 1 -> 0.5
    assert cm.miou() == pytest.approx((1 + 0.5) / 2)
    assert cm.miou_all == pytest.approx((1 + 0.5 + 0.5) / 3)
    summary = cm.summary()
    assert summary["accuracy"] == pytest.approx(0.75) and summary["pixels"] == 4
    assert summary["per_class_iou"]["Road"] == pytest.approx(0.5)
    assert summary["per_class_iou"]["Sky"] is None
    assert summary["miou_12"] == pytest.approx(cm.miou_all)
    json.loads(json.dumps(summary, allow_nan=False))
    table = cm.table()
    assert "| Road | 0.500 |" in table and "| Sky | n/a |" in table and "0.750" in table


def test_ignore_index_and_all_ignored():
    cm = ConfusionMatrix(num_classes=2, ignore_index=255)
    cm.update(torch.tensor([1, 1]), torch.tensor([255, 255]))
    assert cm.mat.sum() == 0 and math.isnan(cm.pixel_accuracy) and math.isnan(cm.miou())


def test_merge_equals_joint_update_and_reset():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 12, (2, 5, 7)) for _ in range(3)]
    targets = [rng.integers(0, 12, (2, 5, 7)) for _ in range(3)]
    targets[1][0, 0] = 255
    joint, parts = ConfusionMatrix(), [ConfusionMatrix() for _ in range(3)]
    joint.update(np.stack(preds), np.stack(targets))
    for cm, p, t in zip(parts, preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert torch.equal(merged.mat,
                       joint.mat) and joint.mat.sum() == 3 * 70 - 7  # one ignored row of 7
    assert merged.all_reduce() is merged  # not distributed: a no-op
    merged.reset()
    assert merged.mat.sum() == 0


def test_bad_inputs_are_named():
    cm = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"label ids \[7\]"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(num_classes=4))


def test_updates_accumulate_and_counts_stay_exact_past_float_precision():
    """Mutants (from `make mutants`): `self.mat = counts` (each update replaces the ones
    before: a whole evaluation scored on its last frame); a float matrix, whose counts stop
    at 2**24 pixels (about 50 frames at 720x960)."""
    cm = ConfusionMatrix(num_classes=2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    cm.update(torch.tensor([1]), torch.tensor([1]))
    assert cm.mat.tolist() == [[1, 1], [0, 1]]
    cm.mat[0, 0] = 2**24
    cm.update(torch.tensor([0]), torch.tensor([0]))
    assert cm.mat.dtype == torch.int64 and cm.summary()["pixels"] == 2**24 + 3


def test_an_id_equal_to_the_class_count_is_rejected_not_counted_elsewhere():
    """Mutant: `ids > n` instead of `ids >= n` lets id 3 of a 3-class matrix fold into the
    next row of the flattened bincount."""
    cm = ConfusionMatrix(num_classes=3)
    with pytest.raises(ValueError, match=r"prediction ids \[3\] are outside 0\.\.2"):
        cm.update(torch.tensor([3, 0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"label ids \[3\]"):
        cm.update(torch.tensor([0, 0]), torch.tensor([3, 0]))
    with pytest.raises(TypeError, match="pred must hold integer class ids"):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="target must hold integer class ids"):
        cm.update(torch.zeros(2, dtype=torch.long), torch.zeros(2))
    assert cm.mat.sum() == 0


def test_summary_keys_table_layout_and_default_class_names():
    """What reports and JSON readers rely on (mutants renaming the keys or the header)."""
    cm = ConfusionMatrix(num_classes=3)
    assert cm.class_names == ("0", "1", "2")
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    assert set(cm.summary()) == {"accuracy", "miou", "miou_12", "per_class_iou", "pixels"}
    lines = cm.table().split("\n")
    assert lines[:2] == ["| class | IoU |", "|---|---:|"] and lines[2] == "| 0 | 1.000 |"
    assert lines[-3:] == ["| **mIoU (named classes)** | 0.500 |", "| **mIoU (all 3)** | 0.500 |",
                          "| **pixel accuracy** | 0.667 |"]


class _Heads(torch.nn.Module):
    """A network in train mode: (main, aux1, aux2) logits, each pointing at another class."""

    def forward(self, x):
        n, _, h, w = x.shape
        heads = []
        for winner in (2, 0, 1):
            logits = torch.zeros(n, 3, h, w)
            logits[:, winner] = 1.0
            heads.append(logits)
        return tuple(heads)


def test_predict_ids_reads_the_main_head_of_a_tuple_and_keeps_the_size_when_none_is_asked():
    """Bugs guarded: ids taken from an auxiliary head (output[1]) or the tuple passed on
    whole; `size=None` treated as a size to resize to (`size is not None or ...`)."""
    from uda_seg_core.metrics import predict_ids

    images = torch.zeros(2, 3, 4, 6)
    ids = predict_ids(_Heads(), images)
    assert ids.shape == (2, 4, 6) and bool((ids == 2).all())
    bigger = predict_ids(_Heads(), images, size=(8, 12))
    assert bigger.shape == (2, 8, 12) and bool((bigger == 2).all())


class LabelledImages(torch.utils.data.Dataset):
    """Items whose image carries its own label in channel 0, every class present."""

    def __init__(self, n: int = 3, size=(12, 16)):
        g = torch.Generator().manual_seed(0)
        self.labels = [torch.randint(0, NUM_CLASSES, size, generator=g) for _ in range(n)]
        self.labels[0].view(-1)[:NUM_CLASSES] = torch.arange(NUM_CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        label = self.labels[i].clone()
        label[0, -1] = 255  # an ignored pixel, which no prediction may be charged for
        image = self.labels[i].float().expand(3, -1, -1).clone()
        return {"image": image, "label": label, "name": f"item{i}"}


class Oracle(nn.Module):
    """Logits that put all mass on the class written in the image; optionally shifted
    by one class (always wrong) or produced at half resolution."""

    num_classes = NUM_CLASSES

    def __init__(self, shift: int = 0, half: bool = False):
        super().__init__()
        self.shift, self.half = shift, half

    def forward(self, x):
        ids = (x[:, 0].long() + self.shift) % NUM_CLASSES
        logits = F.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float()
        return logits[..., ::2, ::2] if self.half else logits


def test_perfect_predictor_scores_one():
    cm = evaluate_model(Oracle(), LabelledImages(), "cpu")
    summary = cm.summary()
    assert summary["miou"] == 1.0 and summary["miou_12"] == 1.0 and summary["accuracy"] == 1.0
    assert summary["pixels"] == 3 * 12 * 16 - 3  # ignored pixels are not counted
    assert cm.summary()["per_class_iou"]["Background"] == 1.0


def test_wrong_predictor_scores_zero_and_batches_agree():
    assert evaluate_model(Oracle(shift=1), LabelledImages(), "cpu").summary()["miou"] == 0.0
    one = evaluate_model(Oracle(), LabelledImages(4), "cpu", batch_size=1).mat
    two = evaluate_model(Oracle(), LabelledImages(4), "cpu", batch_size=2).mat
    assert torch.equal(one, two)


def test_low_resolution_logits_are_resized_to_the_label():
    cm = evaluate_model(Oracle(half=True), LabelledImages(), "cpu")
    assert cm.summary()["pixels"] == 3 * 12 * 16 - 3
    assert 0 < cm.summary()["accuracy"] < 1  # upsampled guesses: right in places, not everywhere
