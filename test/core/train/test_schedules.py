"""The poly learning-rate decay (train/schedules.py)."""
from __future__ import annotations

import io

import pytest
import torch

from uda_seg_core.train.schedules import poly_factor, poly_scheduler


def test_poly_decay_follows_the_paper_and_survives_a_checkpoint():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100) == 0.0
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.5e-2)
    sched = poly_scheduler(opt, max_iters=10)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-2 * 0.6**0.9)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    opt2 = torch.optim.SGD([param], lr=2.5e-2)
    sched2 = poly_scheduler(opt2, max_iters=999)  # replaced by the stored 10
    sched2.load_state_dict(torch.load(buffer, weights_only=True))
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(2.5e-2 * 0.5**0.9)
