"""Parameters and MACs (models/complexity.py)."""
from __future__ import annotations

from torch import nn

from uda_seg_core.models import (
    count_macs,
)


def test_count_macs_of_a_known_convolution():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 10, 20)) == 10 * 20 * 8 * 3 * 9
    depthwise = nn.Conv2d(8, 8, 4, 2, 1, groups=8)
    assert count_macs(depthwise, (1, 8, 16, 16)) == 8 * 8 * 8 * 16
