"""Learning-rate schedules: the paper's poly decay, applied per iteration.

    lr = lr0 * (1 - iteration / max_iters) ** power        (power = 0.9)

Both the segmentation network and the discriminator use it (section IV-B). An optional
linear warm-up (`train.warmup_iters`, segmentation network only) ramps the factor from
1/warmup to 1 over the first iterations: a pretrained encoder's BatchNorm statistics and
weights are not thrown off by the full learning rate on a random head. The schedule
is a `torch.optim.lr_scheduler.LambdaLR` around a small picklable `PolyDecay`, so its
`state_dict()` holds only numbers and a resumed run continues on the same curve.

    scheduler = poly_scheduler(optimizer, max_iters=20000, power=0.9)
    ...; optimizer.step(); scheduler.step()      # once per iteration
"""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def poly_factor(iteration: int, max_iters: int, power: float = 0.9) -> float:
    """(1 - iteration / max_iters) ** power, clamped to [0, 1]."""
    if max_iters <= 0:
        raise ValueError(f"poly decay needs max_iters > 0, got {max_iters}")
    progress = min(max(iteration, 0), max_iters) / max_iters
    return (1.0 - progress) ** power


class PolyDecay:
    """The multiplicative factor of LambdaLR; a class (not a lambda) so it is picklable
    and its two numbers go into the scheduler's state_dict."""

    def __init__(self, max_iters: int, power: float = 0.9, warmup: int = 0):
        if max_iters <= 0:
            raise ValueError(f"poly decay needs max_iters > 0, got {max_iters}")
        if warmup < 0:
            raise ValueError(f"warm-up iterations must be >= 0, got {warmup}")
        self.max_iters = int(max_iters)
        self.power = float(power)
        self.warmup = int(warmup)

    def __call__(self, iteration: int) -> float:
        ramp = min(1.0, (iteration + 1) / self.warmup) if self.warmup else 1.0
        return ramp * poly_factor(iteration, self.max_iters, self.power)


def poly_scheduler(optimizer: Optimizer, max_iters: int, power: float = 0.9,
                   warmup: int = 0) -> LambdaLR:
    """A per-iteration poly schedule (after `warmup` linear iterations) on every parameter
    group of `optimizer`."""
    return LambdaLR(optimizer, lr_lambda=PolyDecay(max_iters, power, warmup))
