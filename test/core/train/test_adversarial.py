"""The adversarial step (eqs. 1-5): what moves, what stays frozen, lambda_adv = 0, and
which way the game goes: D learns source -> SOURCE_LABEL, target -> TARGET_LABEL, and
L_adv moves the target predictions to D's source side."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from helpers.fixtures import tiny_config, tiny_overrides, write_domains
from uda_seg_core.config import Config
from uda_seg_core.losses import SOURCE_LABEL, TARGET_LABEL
from uda_seg_core.models import build_discriminator, build_segmentation_model
from uda_seg_core.train.adversarial import (
    adversarial_step,
    discriminator_step,
    generator_step,
)
from uda_seg_core.train.optim import build_discriminator_optimizer, build_segmentation_optimizer
from uda_seg_core.train.supervised import supervised_step


def batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    source = {"image": torch.randn(2, 3, 48, 64, generator=g),
              "label": torch.randint(0, 12, (2, 48, 64), generator=g)}
    target = {"image": torch.randn(2, 3, 48, 64, generator=g) + 0.5}
    return source, target


def build(cfg: Config, seed: int = 0):
    torch.manual_seed(seed)
    model = build_segmentation_model(cfg.model).train()
    d = build_discriminator(cfg.adapt.discriminator, 12, width=cfg.adapt.d_width).train()
    return model, d, build_segmentation_optimizer(model, cfg), build_discriminator_optimizer(d, cfg)


def params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict, module) -> list[str]:
    return [k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())]


def test_the_discriminator_sees_class_probabilities_of_both_domains():
    """Bug guarded (a surviving mutant of `make mutants`): the source prediction P_s that D
    is trained on normalised over the wrong axis (softmax over rows instead of classes),
    so D learns source from target by an artefact of the normalisation."""
    cfg = tiny_config()
    model, d, opt_g, _ = build(cfg)
    source, target = batches()
    _, p_s, p_t = generator_step(model, d, opt_g, source, target, cfg)
    for p in (p_s, p_t):
        assert p.shape == (2, 12, 48, 64) and not p.requires_grad
        assert torch.allclose(p.sum(dim=1), torch.ones(2, 48, 64), atol=1e-5)
        assert float(p.min()) >= 0.0


@pytest.mark.parametrize("name", ["fcd", "tfd", "dwd"])
def test_one_step_moves_generator_and_discriminator(name):
    cfg = tiny_config(**{"adapt.discriminator": name})
    model, d, opt_g, opt_d = build(cfg)
    g0, d0 = params(model), params(d)
    source, target = batches()
    losses = adversarial_step(model, d, opt_g, opt_d, source, target, cfg)
    assert {"seg", "dice_main", "dice_aux16", "dice_aux32", "adv", "d_source", "d_target",
            "d"} <= set(losses)
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    assert changed(g0, model), "the generator did not move"
    assert len(changed(d0, d)) == len(d0), "every discriminator tensor should be updated"
    assert all(p.requires_grad for p in d.parameters()), "D must be trainable again after the step"


def test_discriminator_gets_no_gradient_from_the_generator_step():
    cfg = tiny_config(**{"adapt.lambda_adv": 1.0})  # a large weight: any leak into D would show
    model, d, opt_g, _ = build(cfg)
    d0 = params(d)
    source, target = batches()
    losses, p_s, p_t = generator_step(model, d, opt_g, source, target, cfg)
    assert losses["adv"] > 0
    assert not changed(d0, d)
    assert all(p.grad is None for p in d.parameters())
    assert not p_s.requires_grad and not p_t.requires_grad
    torch.testing.assert_close(p_t.sum(1), torch.ones_like(p_t[:, 0]))  # softmax over classes


def test_adversarial_term_changes_the_generator_update():
    source, target = batches()
    after = []
    for lam in (0.0, 1.0):
        cfg = tiny_config(**{"adapt.lambda_adv": lam})
        model, d, opt_g, _ = build(cfg)
        generator_step(model, d, opt_g, source, target, cfg)
        after.append(params(model))
    assert any(not torch.equal(after[0][k], after[1][k]) for k in after[0])


def domain_maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax maps as the two domains give them: confident on the source (trained on its
    labels), hesitant on the target (the domain gap)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 12, (2, 48, 64), generator=g)
    one_hot = torch.nn.functional.one_hot(ids, 12).permute(0, 3, 1, 2).float()
    return (4.0 * one_hot).softmax(1), (0.5 * one_hot).softmax(1)


def mean_d_probability(d, p: torch.Tensor) -> float:
    """D's mean sigmoid output: towards TARGET_LABEL means 'looks like target'."""
    with torch.no_grad():
        return torch.sigmoid(d(p)).mean().item()


def trained_discriminator(cfg: Config, p_s: torch.Tensor, p_t: torch.Tensor, steps: int = 25):
    """A D trained by `discriminator_step` on the two domains' maps (D lr raised for speed)."""
    cfg.adapt.d_lr = 2e-3
    _, d, _, opt_d = build(cfg)
    losses = [discriminator_step(d, opt_d, p_s, p_t, cfg) for _ in range(steps)]
    return d, losses


def test_discriminator_learns_to_tell_source_from_target():
    """Mutant: source and target domain labels swapped in the D step
    (`discriminator_step` training P_s -> TARGET_LABEL and P_t -> SOURCE_LABEL). D must
    end up judging source maps near SOURCE_LABEL and target maps near TARGET_LABEL."""
    p_s, p_t = domain_maps()
    d, losses = trained_discriminator(tiny_config(), p_s, p_t)
    assert losses[-1]["d"] < 0.5 * losses[0]["d"], (losses[0], losses[-1])
    on_source, on_target = mean_d_probability(d, p_s), mean_d_probability(d, p_t)
    assert abs(on_source - SOURCE_LABEL) < 0.25, f"D says {on_source:.2f} on source maps"
    assert abs(on_target - TARGET_LABEL) < 0.25, f"D says {on_target:.2f} on target maps"


def target_judged(model, d, target: dict) -> float:
    """D's mean output on the model's target predictions (train-mode forward, as in the
    generator step)."""
    with torch.no_grad():
        return mean_d_probability(d, model(target["image"], aux_mode="eval").softmax(1))


def test_adversarial_loss_moves_target_predictions_to_the_source_side():
    """Mutants: L_adv with the wrong sign (`-lambda_adv * loss_adv`, or target predictions
    pushed towards TARGET_LABEL). D first learns the two domains from the network's own
    predictions; then, from the same start, three generator steps with lambda_adv = 1
    must leave D judging the target predictions nearer SOURCE_LABEL than three steps
    with lambda_adv = 0, which differ from them only by L_adv's gradient."""
    source, target = batches()
    cfg = tiny_config(**{"adapt.lambda_adv": 0.0})
    model, _, opt_g, _ = build(cfg)
    start = copy.deepcopy(model.state_dict())
    _, p_s, p_t = generator_step(model, build(cfg)[1], opt_g, source, target, cfg)
    d, _ = trained_discriminator(cfg, p_s, p_t)
    judged = {}
    for lam in (0.0, 1.0):
        cfg = tiny_config(**{"adapt.lambda_adv": lam})
        model.load_state_dict(start)
        opt_g = build_segmentation_optimizer(model, cfg)
        for _ in range(3):
            generator_step(model, d, opt_g, source, target, cfg)
        judged[lam] = target_judged(model, d, target)
    moved = (judged[0.0] - judged[1.0]) * (TARGET_LABEL - SOURCE_LABEL)
    assert moved > 0.01, f"D(target) {judged[0.0]:.4f} without L_adv, {judged[1.0]:.4f} with"


def test_lambda_zero_equals_a_source_only_step():
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        source, target = batches()
        cfg = tiny_config(**{"adapt.lambda_adv": 0.0})
        model_a, d, opt_g, opt_d = build(cfg)
        model_b = copy.deepcopy(model_a)
        opt_b = build_segmentation_optimizer(model_b, cfg)
        for _ in range(2):  # twice, so the momentum buffers take part as well
            adversarial_step(model_a, d, opt_g, opt_d, source, target, cfg)
            supervised_step(model_b, opt_b, source, cfg)
        for (name, a), (_, b) in zip(model_a.named_parameters(), model_b.named_parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs")
    finally:
        torch.use_deterministic_algorithms(False)


def test_during_training_pruning_keeps_the_discriminator_sparse(tmp_path):
    from uda_seg_core.checkpoint import load_checkpoint
    from uda_seg_core.cli import main

    idda, camvid = write_domains(tmp_path, n=2)
    overrides = tiny_overrides(tmp_path, idda, camvid, **{
        "adapt.prune": "fixed", "adapt.prune_keep_masks": "true", "train.val_every": 100})
    assert main(["adapt", *overrides]) == 0
    run_dir = tmp_path / "runs" / "IDDA2CamVid_bisenet-r18_fcd_prune-fixed"
    d_state = load_checkpoint(run_dir / "last.pt")["modules"]["discriminator"]
    assert not any(k.endswith(("_orig",
                               "_mask")) for k in d_state)  # dense tensors, loadable anywhere
    weights = [v for k, v in d_state.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert 0.19 <= zeros <= 0.21  # global 0.2, masks kept through both epochs


def test_pruning_hooks_prune_to_the_schedule_of_the_epoch_they_are_in():
    """Bugs guarded (surviving mutants of `make mutants`): a resume in the middle of epoch 3
    that re-prunes to another epoch's target (`iteration // per_epoch + 2`, `- 1`), or that
    prunes at an epoch boundary (where the epoch hook is about to), or without kept masks;
    the epoch hook's metric names."""
    from uda_seg_core.pruning import sparsity_report
    from uda_seg_core.train.adversarial import pruning_hooks

    cfg = tiny_config()
    cfg.adapt.prune, cfg.adapt.prune_rate, cfg.adapt.prune_keep_masks = "incremental", 0.1, True
    assert pruning_hooks(tiny_config(), build(cfg)[1], 10) == ([], [])  # prune: none
    _, d, _, _ = build(cfg)
    (at_epoch_start,), (after_resume,) = pruning_hooks(cfg, d, per_epoch=10)
    after_resume(20)  # a boundary: the epoch hook prunes for epoch 3 next, not the resume
    assert sparsity_report(d)["sparsity"] == 0.0
    after_resume(25)  # in the middle of epoch 3 (iterations 20-29): its target, 0.3
    assert sparsity_report(d)["sparsity"] == pytest.approx(0.3, abs=0.005)
    metrics = at_epoch_start(4)
    assert set(metrics) == {"prune/sparsity", "prune/target"}
    assert metrics["prune/target"] == pytest.approx(0.4)
    assert metrics["prune/sparsity"] == pytest.approx(0.4, abs=0.005)
    cfg.adapt.prune_keep_masks = False
    _, fresh, _, _ = build(cfg)
    pruning_hooks(cfg, fresh, 10)[1][0](25)  # masks not kept: nothing to re-create
    assert sparsity_report(fresh)["sparsity"] == 0.0
