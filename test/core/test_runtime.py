"""runtime.amp_step, the one optimiser update of every training step: zero_grad, scaled
backward per loss, unscale + clip when asked, step, scale update."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uda_seg_core.runtime import amp_step, grad_scaler


def net_and_opt(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("scaler", [None, "disabled"])
def test_without_scaling_it_is_zero_grad_backward_step(scaler):
    x, y = data()
    a, opt_a = net_and_opt()
    b, opt_b = net_and_opt()
    scaler = grad_scaler(torch.device("cpu"), True) if scaler == "disabled" else None
    for _ in range(3):  # stale gradients would show from the second step on
        with amp_step(opt_a, scaler) as backward:
            backward(nn.functional.mse_loss(a(x), y))
        opt_b.zero_grad(set_to_none=True)
        nn.functional.mse_loss(b(x), y).backward()
        opt_b.step()
    for pa, pb in zip(params(a), params(b)):
        assert torch.equal(pa, pb)


def test_each_backward_adds_into_one_step():
    """The generator step backpropagates L_seg and lambda * L_adv separately."""
    x, y = data()
    a, opt_a = net_and_opt()
    b, opt_b = net_and_opt()
    with amp_step(opt_a) as backward:
        backward(nn.functional.mse_loss(a(x[:8]), y[:8]))
        backward(0.5 * a(x[8:]).abs().mean())
    with amp_step(opt_b) as backward:
        backward(nn.functional.mse_loss(b(x[:8]), y[:8]) + 0.5 * b(x[8:]).abs().mean())
    for pa, pb in zip(params(a), params(b)):
        torch.testing.assert_close(pa, pb)


def test_no_step_when_the_body_raises():
    x, y = data()
    net, opt = net_and_opt()
    before = params(net)
    with pytest.raises(RuntimeError, match="mid-step"), amp_step(opt) as backward:
        backward(nn.functional.mse_loss(net(x), y))
        raise RuntimeError("mid-step")
    assert all(torch.equal(p, q) for p, q in zip(before, params(net)))


def test_clipping_sees_the_unscaled_gradients():
    x, y = data()
    a, opt_a = net_and_opt()
    b, opt_b = net_and_opt()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    with amp_step(opt_a, scaler, max_grad_norm=0.01) as backward:
        backward(nn.functional.mse_loss(a(x), y))
    opt_b.zero_grad(set_to_none=True)
    nn.functional.mse_loss(b(x), y).backward()
    norm = nn.utils.clip_grad_norm_(list(b.parameters()), 0.01)
    assert norm > 0.01  # the clip did something
    opt_b.step()
    for pa, pb in zip(params(a), params(b)):
        torch.testing.assert_close(pa, pb)


def test_an_overflow_skips_the_step_and_lowers_the_scale():
    x, _ = data()
    net, opt = net_and_opt()
    before = params(net)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    with amp_step(opt, scaler) as backward:
        backward(net(x).sum() * float("inf"))
    assert all(torch.equal(p, q) for p, q in zip(before, params(net)))
    assert scaler.get_scale() < 2.0 ** 12
