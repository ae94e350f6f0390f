"""The adversarial step (eqs. 1-5): what moves, what stays frozen, and lambda_adv = 0."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from train_helpers import single_thread  # noqa: F401  (fixture)

from uda_seg_core.config import Config
from uda_seg_core.models import build_discriminator, build_segmentation_model
from uda_seg_core.train.adversarial import adversarial_step, generator_step
from uda_seg_core.train.optim import build_discriminator_optimizer, build_segmentation_optimizer
from uda_seg_core.train.supervised import supervised_step

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_cfg(lambda_adv: float = 0.001, discriminator: str = "fcd") -> Config:
    cfg = Config()
    cfg.model.backbone = "resnet18"
    cfg.adapt.lambda_adv = lambda_adv
    cfg.adapt.discriminator = discriminator
    cfg.adapt.d_width = 8
    return cfg


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


@pytest.mark.parametrize("name", ["fcd", "tfd", "dwd"])
def test_one_step_moves_generator_and_discriminator(name):
    cfg = tiny_cfg(discriminator=name)
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
    cfg = tiny_cfg(lambda_adv=1.0)  # a large weight: any leak into D would show
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
        cfg = tiny_cfg(lambda_adv=lam)
        model, d, opt_g, _ = build(cfg)
        generator_step(model, d, opt_g, source, target, cfg)
        after.append(params(model))
    assert any(not torch.equal(after[0][k], after[1][k]) for k in after[0])


def test_lambda_zero_equals_a_source_only_step():
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        source, target = batches()
        cfg = tiny_cfg(lambda_adv=0.0)
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
    from train_helpers import tiny_overrides, write_domains

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
