"""Target terms of adaptation (train/target_terms.py): MinEnt and class-balanced
self-training, with and without a discriminator."""
from __future__ import annotations

import pytest
import torch

from helpers.fixtures import tiny_config, tiny_overrides, write_domains
from uda_seg_core.config import ConfigError
from uda_seg_core.labels import IGNORE_INDEX
from uda_seg_core.losses import entropy_loss
from uda_seg_core.models import build_discriminator, build_segmentation_model
from uda_seg_core.train.adversarial import adversarial_step, generator_step
from uda_seg_core.train.optim import build_segmentation_optimizer
from uda_seg_core.train.supervised import labelled_loss
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


def batchnorm_batch_sizes(model: torch.nn.Module) -> list[int]:
    """The batch sizes the network's first BatchNorm layer sees, call by call."""
    seen: list[int] = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    return seen


def test_joint_batchnorm_normalises_source_and_target_in_one_batch():
    # Bug guarded: the flag is read but the domains still go through BatchNorm one by one,
    # so training normalises each with its own statistics and inference with their mix.
    source, target = batches()
    for joint, expected in ((False, [2, 2]), (True, [4])):
        cfg = tiny_config(**{"adapt.discriminator": "fcd", "adapt.target_loss": "entropy",
                             "adapt.joint_batchnorm": joint})
        torch.manual_seed(0)
        model = build_segmentation_model(cfg.model).train()
        seen = batchnorm_batch_sizes(model)
        losses, p_s, p_t = generator_step(model, build_discriminator("fcd", 12, width=8),
                                          build_segmentation_optimizer(model, cfg), source,
                                          target, cfg)
        assert seen == expected, f"joint_batchnorm={joint}"
        assert {"adv", "entropy"} <= set(losses)
        assert p_s.shape == p_t.shape == (2, 12, 48, 64) and not p_t.requires_grad


def test_joint_batchnorm_gives_the_source_loss_of_the_source_half_only():
    # Bug guarded: labels compared with the target half, or the loss taken over both.
    cfg = tiny_config(**{"adapt.discriminator": "none", "adapt.joint_batchnorm": True})
    source, target = batches()
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model).train()
    expected_outputs = [o[:2] for o in model(torch.cat([source["image"], target["image"]]),
                                                 aux_mode="train")]
    expected, _ = labelled_loss(expected_outputs, source["label"], cfg)
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model).train()
    losses, _, _ = generator_step(model, None, build_segmentation_optimizer(model, cfg), source,
                                  target, cfg)
    assert losses["seg"] == pytest.approx(expected.item(), rel=1e-5)


def test_joint_batchnorm_refuses_source_and_target_crops_of_two_sizes():
    cfg = tiny_config(**{"adapt.discriminator": "none", "adapt.joint_batchnorm": True})
    source, _ = batches()
    model = build_segmentation_model(cfg.model).train()
    with pytest.raises(ConfigError, match="one size"):
        generator_step(model, None, build_segmentation_optimizer(model, cfg), source,
                       {"image": torch.randn(2, 3, 32, 64)}, cfg)


def test_adapt_teacher_labels_instead_of_the_network_adaptation_starts_from(tmp_path):
    # e.g. the BatchNorm-re-estimated network labels, the source-only network is trained
    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.train.target_terms import build_pseudo_labeller

    idda, camvid = write_domains(tmp_path, n=2)
    cfg = tiny_config(tmp_path, idda, camvid)
    paths = {}
    for seed, name in ((0, "start"), (1, "teacher")):
        torch.manual_seed(seed)
        paths[name] = save_checkpoint(tmp_path / f"{name}.pt",
                                      build_segmentation_model(cfg.model), cfg)
    cfg = tiny_config(tmp_path, idda, camvid, **{"train.init_from": str(paths["start"]),
                                                 "adapt.target_loss": "pseudo_label"})
    for teacher, expected in (("", "start"), (str(paths["teacher"]), "teacher")):
        cfg.adapt.teacher = teacher
        labeller = build_pseudo_labeller(cfg, torch.device("cpu"))
        torch.manual_seed(0 if expected == "start" else 1)
        reference = build_segmentation_model(cfg.model).state_dict()
        for name, value in labeller.teacher.state_dict().items():
            torch.testing.assert_close(value, reference[name], msg=f"{teacher!r}: {name}")
