"""Model size and compute: parameters and multiply-accumulates (MACs) of one forward pass.

MACs are counted by torch's own operator-level FLOP counter (torch.utils.flop_counter),
so they are the convolutions and matrix products the forward really runs, functional
ones included: for tensorly-torch's factorised convolutions that is the small 1x1 / 4x4
/ 4x1 convolutions, not the dense kernel they stand for. Element-wise work (BN, ReLU,
interpolation) is not counted.

    from uda_seg_core.models import count_macs, count_parameters
    count_macs(model, (1, 12, 720, 960))
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def _forward_counted(model: nn.Module, input_shape: Sequence[int]) -> FlopCounterMode:
    param = next(model.parameters(), None)
    x = torch.zeros(
        *input_shape,
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    was_training = model.training
    model.eval()  # count inference: no dropout, no BN statistics update, no aux heads
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return counter


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a zero input of `input_shape`."""
    return _forward_counted(model, input_shape).get_total_flops() // 2


def macs_per_module(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs of each direct child of `model` (by its attribute name), for per-layer tables."""
    counts = _forward_counted(model, input_shape).get_flop_counts()
    root = type(model).__name__
    result = {}
    for name, _ in model.named_children():
        per_op = counts.get(f"{root}.{name}", {})
        result[name] = sum(per_op.values()) // 2
    return result
