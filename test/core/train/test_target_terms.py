"""Target terms of adaptation (train/target_terms.py): MinEnt and class-balanced
self-training, with and without a discriminator."""
from __future__ import annotations

import pytest
import torch

from helpers.fixtures import tiny_config, tiny_overrides, write_domains
from uda_seg_core.labels import IGNORE_INDEX
from uda_seg_core.losses import entropy_loss
from uda_seg_core.models import build_segmentation_model
from uda_seg_core.train.adversarial import adversarial_step, generator_step
from uda_seg_core.train.optim import build_segmentation_optimizer
from uda_seg_core.train.target_terms import PseudoLabeller, class_thresholds


def batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    source = {"image": torch.randn(2, 3, 48, 64, generator=g),
              "label": torch.randint(0, 12, (2, 48, 64), generator=g)}
    return source, {"image": torch.randn(2, 3, 48, 64, generator=g) + 0.5}


def test_entropy_is_zero_for_certain_and_one_for_uniform_predictions():
    certain = torch.full((1, 4, 2, 2), -30.0)
    certain[:, 2] = 30.0
    assert entropy_loss(certain).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_loss(torch.zeros(1, 4, 2, 2)).item() == pytest.approx(1.0)


def test_minent_without_a_discriminator_makes_target_predictions_more_confident():
    cfg = tiny_config(**{"adapt.discriminator": "none", "adapt.target_loss": "entropy",
                         "adapt.target_weight": 50.0, "train.lr": 0.01})
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model).train()
    opt = build_segmentation_optimizer(model, cfg)
    source, target = batches()

    def target_entropy():
        model.eval()
        with torch.no_grad():
            value = entropy_loss(model(target["image"], aux_mode="eval")).item()
        model.train()
        return value

    before = target_entropy()
    for _ in range(3):
        losses = adversarial_step(model, None, opt, None, source, target, cfg)
    assert "entropy" in losses and "adv" not in losses and "d" not in losses
    assert target_entropy() < before


def test_without_a_target_term_or_discriminator_the_target_batch_moves_nothing():
    # Bug guarded: a target forward that still backpropagates when no term asks for it.
    cfg = tiny_config(**{"adapt.discriminator": "none"})
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model).train()
    opt = build_segmentation_optimizer(model, cfg)
    source, target = batches()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses, _, p_t = generator_step(model, None, opt, source, target, cfg)
    assert "adv" not in losses and not p_t.requires_grad
    # the same update as the source batch alone gives
    torch.manual_seed(0)
    alone = build_segmentation_model(cfg.model).train()
    alone.load_state_dict({**alone.state_dict(), **before})
    opt_alone = build_segmentation_optimizer(alone, cfg)
    from uda_seg_core.train.supervised import supervised_step
    supervised_step(alone, opt_alone, source, cfg)
    for (name, a), (_, b) in zip(model.named_parameters(), alone.named_parameters()):
        torch.testing.assert_close(a, b, msg=f"{name} differs")


class Fixed(torch.nn.Module):
    """A 'network' whose scores are given: probabilities 0.9 / 0.6 for class 0 / 1 rows."""

    def forward(self, x, aux_mode=None):
        scores = torch.full((x.shape[0], 3, 2, 2), -10.0)
        scores[:, 0, 0] = torch.log(torch.tensor(9.0))  # p(class 0) = 0.9 on row 0
        scores[:, 1, 0] = 0.0
        scores[:, 1, 1] = torch.log(torch.tensor(1.5))  # p(class 1) = 0.6 on row 1
        scores[:, 2, 1] = 0.0
        return scores


def test_class_thresholds_are_per_class_quantiles_and_unseen_classes_trust_nothing():
    frames = [{"image": torch.zeros(3, 2, 2)}]
    thresholds = class_thresholds(Fixed(), frames, 3, quantile=0.5)
    assert thresholds[0].item() == pytest.approx(0.9, abs=1e-3)
    assert thresholds[1].item() == pytest.approx(0.6, abs=1e-3)
    assert thresholds[2].item() == 1.0  # never predicted
    # class-balanced: the less confident class keeps its pixels at its own threshold
    labels = PseudoLabeller(Fixed(), thresholds)(torch.zeros(1, 3, 2, 2))
    assert labels[0, 0].tolist() == [0, 0] and labels[0, 1].tolist() == [1, 1]
    strict = PseudoLabeller(Fixed(), torch.tensor([0.95, 0.5, 1.0]))(torch.zeros(1, 3, 2, 2))
    assert (strict[0, 0] == IGNORE_INDEX).all() and (strict[0, 1] == 1).all()


def test_self_training_run_needs_a_teacher_and_trains_without_d(tmp_path, capsys):
    from uda_seg_core.checkpoint import load_checkpoint, save_checkpoint
    from uda_seg_core.cli import main

    idda, camvid = write_domains(tmp_path, n=2)
    base = tiny_overrides(tmp_path, idda, camvid, **{
        "adapt.discriminator": "none", "adapt.target_loss": "pseudo_label",
        "train.val_every": 100, "train.run_name": "st"})
    assert main(["adapt", *base]) != 0
    assert "needs train.init_from" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "st").exists()  # refused before anything was written
    cfg = tiny_config(tmp_path, idda, camvid)
    torch.manual_seed(0)
    teacher = save_checkpoint(tmp_path / "teacher.pt", build_segmentation_model(cfg.model), cfg)
    assert main(["adapt", *base, f"train.init_from={teacher}", "--overwrite"]) == 0
    last = load_checkpoint(tmp_path / "runs" / "st" / "last.pt")
    assert "discriminator" not in (last.get("modules") or {})
