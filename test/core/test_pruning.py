"""Unstructured pruning: per-module and global amounts, permanence, the discriminator's
per-epoch schedules, and that the optimiser keeps its parameters and state."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uda_seg_core.config import AdaptConfig
from uda_seg_core.pruning import (
    dense_state_dict,
    effective_tensor,
    is_pruned,
    prunable_parameters,
    prune_discriminator,
    prune_global,
    prune_modules,
    remove_masks,
    sparsity_report,
    target_sparsity,
)


def small_discriminator(seed: int = 0) -> nn.Sequential:
    """An FCD-shaped stack (4x4 stride-2 convs, LeakyReLU 0.2) small enough for a test."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(12, 8, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(16, 1, 4, 2, 1),
    )


def adam_step(model: nn.Module, opt: torch.optim.Optimizer, seed: int = 1) -> None:
    torch.manual_seed(seed)
    x = torch.randn(2, 12, 16, 16)
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


def zero_positions(model: nn.Module) -> list[torch.Tensor]:
    return [effective_tensor(m, n) == 0 for m, n in prunable_parameters(model)]


def test_prunable_parameters_are_conv_and_linear_weights_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    targets = prunable_parameters([model, model[0]])  # nested modules: listed once
    assert [(type(m), n) for m, n in targets] == [(nn.Conv2d, "weight"), (nn.Linear, "weight")]


def test_prune_modules_gives_each_layer_the_asked_sparsity():
    model = small_discriminator()
    report = prune_modules(model, 0.3)
    for name, layer in report["layers"].items():
        assert layer["zeros"] == round(0.3 * layer["numel"]), name
    assert report["sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert is_pruned(model)
    # biases are never pruned
    assert all((m.bias != 0).all() for m in model if isinstance(m, nn.Conv2d))


def test_prune_global_zeros_the_globally_smallest_weights():
    a, b = nn.Linear(2, 2, bias=False), nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, -5.0], [3.0, 0.5]]))
        b.weight.copy_(torch.tensor([[2.0, -0.1, 4.0]]))
    report = prune_global([a, b], 4 / 7)  # the four smallest |w|: 0.1, 0.5, 1, 2
    assert torch.equal(a.weight, torch.tensor([[0.0, -5.0], [3.0, 0.0]]))
    assert torch.equal(b.weight, torch.tensor([[0.0, 0.0, 4.0]]))
    assert report["zeros"] == 4 and report["numel"] == 7
    # global pruning leaves the layers unevenly sparse
    assert [layer["sparsity"] for layer in report["layers"].values()] == [0.5, pytest.approx(2 / 3)]


def test_remove_masks_keeps_zeros_drops_hooks_and_keeps_parameter_objects():
    model = small_discriminator()
    before = [m.weight for m in model if isinstance(m, nn.Conv2d)]
    prune_global(model, 0.5)
    zeros = zero_positions(model)
    assert remove_masks(model) == 3
    assert not is_pruned(model)
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.endswith("_orig") for n in names)
    assert not any(n.endswith("_mask") for n, _ in model.named_buffers())
    after = [m.weight for m in model if isinstance(m, nn.Conv2d)]
    assert all(x is y for x, y in zip(before, after))
    assert all(torch.equal(z, now) for z, now in zip(zeros, zero_positions(model)))
    assert sparsity_report(model)["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_amount_outside_zero_one_is_an_error():
    with pytest.raises(ValueError, match="fraction in"):
        prune_global(small_discriminator(), 1.5)


@pytest.mark.parametrize("mode,expected", [
    ("fixed", [0.2, 0.2, 0.2, 0.2]),
    ("incremental", [0.005, 0.010, 0.015, 0.020]),
    ("none", [0.0, 0.0, 0.0, 0.0]),
])
@pytest.mark.parametrize("keep", [False, True])
def test_discriminator_schedule_gives_the_expected_sparsity_each_epoch(mode, expected, keep):
    cfg = AdaptConfig(prune=mode, prune_keep_masks=keep)
    d = small_discriminator()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    n = sum(m.weight.numel() for m in d if isinstance(m, nn.Conv2d))
    for epoch, want in zip(range(1, 5), expected):
        assert target_sparsity(epoch, cfg) == pytest.approx(want)
        report = prune_discriminator(d, epoch, cfg)
        assert report["target"] == pytest.approx(want)
        assert report["zeros"] == round(want * n)  # right after pruning, before any step
        assert is_pruned(d) == (keep and mode != "none")
        for step in range(2):
            adam_step(d, opt, seed=epoch * 10 + step)


def test_incremental_schedule_is_capped_below_one():
    cfg = AdaptConfig(prune="incremental", prune_rate=0.5)
    assert target_sparsity(10, cfg) == 0.99


def test_kept_masks_keep_zeros_through_optimiser_steps_and_nest_across_epochs():
    cfg = AdaptConfig(prune="incremental", prune_rate=0.1, prune_keep_masks=True)
    d = small_discriminator()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    adam_step(d, opt)  # Adam moments are non-zero before pruning, so masked weights move
    previous = None
    for epoch in (1, 2, 3):
        prune_discriminator(d, epoch, cfg)
        zeros = zero_positions(d)
        if previous is not None:  # incremental: last epoch's zeros are still pruned
            assert all((p & ~z).sum() == 0 for p, z in zip(previous, zeros))
        for step in range(3):
            adam_step(d, opt, seed=step)
        after = zero_positions(d)
        assert all(torch.equal(z, a) for z, a in zip(zeros, after)), "a masked weight regrew"
        # and the forward pass really uses the zeros
        for m in d:
            if isinstance(m, nn.Conv2d):
                assert torch.equal(m.weight == 0, (m.weight_orig * m.weight_mask) == 0)
        previous = zeros
    assert sparsity_report(d)["sparsity"] == pytest.approx(0.3, abs=1e-3)


def test_paper_mode_lets_zeros_regrow_after_an_optimiser_step():
    cfg = AdaptConfig(prune="fixed", prune_amount=0.2, prune_keep_masks=False)
    d = small_discriminator()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    adam_step(d, opt)
    report = prune_discriminator(d, 1, cfg)
    assert report["sparsity"] == pytest.approx(0.2, abs=1e-3)
    adam_step(d, opt, seed=2)
    assert sparsity_report(d)["sparsity"] < 0.01  # the pruned weights were updated again


@pytest.mark.parametrize("keep", [False, True])
def test_optimiser_keeps_parameters_and_state_across_pruning(keep):
    cfg = AdaptConfig(prune="incremental", prune_rate=0.1, prune_keep_masks=keep)
    d = small_discriminator()
    params = list(d.parameters())
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    adam_step(d, opt)
    moments = {id(p): opt.state[p]["exp_avg"].clone() for p in params}
    for epoch in (1, 2):
        prune_discriminator(d, epoch, cfg)
        now = list(d.parameters())
        assert {id(p) for p in now} == {id(p) for p in params}
        assert all(p in opt.state for p in now)
        if epoch == 1:  # pruning itself leaves the Adam moments untouched
            assert all(torch.equal(opt.state[p]["exp_avg"], moments[id(p)]) for p in now)
        weights = [p.detach().clone() for p in params]
        adam_step(d, opt, seed=epoch)
        assert all(int(opt.state[p]["step"]) == epoch + 1 for p in params)
        assert any(not torch.equal(w, p) for w, p in zip(weights, params)), "the step did nothing"


def test_dense_state_dict_loads_into_a_fresh_model():
    d = small_discriminator()
    prune_global(d, 0.4)
    fresh = small_discriminator(seed=5)
    fresh.load_state_dict(dense_state_dict(d))  # strict: no _orig / _mask keys left
    assert sparsity_report(fresh)["sparsity"] == pytest.approx(0.4, abs=1e-3)
    x = torch.randn(1, 12, 16, 16)
    assert torch.allclose(fresh(x), d(x))


def test_factorised_convolutions_are_pruned_through_their_factors():
    import tltorch

    torch.manual_seed(0)
    conv = tltorch.FactorizedConv.from_conv(nn.Conv2d(12, 16, 4, 2, 1), rank=0.5,
                                            factorization="tucker", implementation="factorized")
    d = nn.Sequential(conv, nn.LeakyReLU(0.2), nn.Conv2d(16, 1, 4, 2, 1))
    names = [n for _, n in prunable_parameters(d)]
    assert names[0] == "core" and "factor_0" in names and names[-1] == "weight"
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    adam_step(d, opt)
    cfg = AdaptConfig(prune="fixed", prune_amount=0.3, prune_keep_masks=True)
    prune_discriminator(d, 1, cfg)
    factor = conv.weight.factors
    orig = factor.factor_0_orig.detach().clone()
    for step in range(2):
        adam_step(d, opt, seed=step)  # a stale factor tensor would fail the second backward
    assert not torch.equal(orig, factor.factor_0_orig)  # gradients reach the factors
    assert sparsity_report(d)["sparsity"] == pytest.approx(0.3, abs=2e-3)
    remove_masks(d)
    assert not is_pruned(d)
    assert sparsity_report(d)["sparsity"] == pytest.approx(0.3, abs=2e-3)
