"""The discriminators (models/discriminators.py): structure, sizes and compute. Tiny CPU
inputs only."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from uda_seg_core.models import (
    DISCRIMINATORS,
    build_discriminator,
    count_macs,
    count_parameters,
)

D_INPUT = (2, 12, 64, 96)


ADAPTSEGNET_CHANNELS = [(12, 64), (64, 128), (128, 256), (256, 512), (512, 1)]


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_output_shape_and_gradient(name):
    torch.manual_seed(0)
    d = build_discriminator(name, num_classes=12)
    x = torch.randn(*D_INPUT).softmax(1).requires_grad_()
    out = d(x)
    assert out.shape == (2, 1, 2, 3)  # 64x96 halved five times
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())
    assert DISCRIMINATORS[name](num_classes=12)(x).shape == out.shape


def test_fcd_is_adaptsegnet_layer_for_layer():
    d = build_discriminator("fcd", num_classes=12)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == ADAPTSEGNET_CHANNELS
    for c in convs:
        assert (c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
                and c.bias is not None)
    kinds = [type(m).__name__ for m in d]
    assert kinds == ["Conv2d", "LeakyReLU"] * 4 + ["Conv2d"]
    assert all(m.negative_slope == 0.2 for m in d if isinstance(m, nn.LeakyReLU))


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_dropout_after_each_conv_and_activation(name):
    assert not any(isinstance(m, nn.Dropout) for m in build_discriminator(name, 12).modules())
    d = build_discriminator(name, 12, dropout=0.01)
    kinds = [type(m).__name__ for m in d]
    assert kinds.count("Dropout") == 4 and kinds[-1] != "Dropout"
    assert all(kinds[i - 1] == "LeakyReLU" for i, kind in enumerate(kinds) if kind == "Dropout")
    assert all(m.p == 0.01 for m in d if isinstance(m, nn.Dropout))


def test_tfd_is_factorised_and_runs_small_convolutions():
    import tltorch

    d = build_discriminator("tfd", num_classes=12, rank=0.5)
    convs = [m for m in d if isinstance(m, tltorch.FactorizedConv)]
    assert len(convs) == 5
    assert all(c.factorization == "tucker" and c.implementation == "factorized" for c in convs)
    assert [(c.in_channels, c.out_channels) for c in convs] == ADAPTSEGNET_CHANNELS
    assert all(c.rank[2:] == (4, 4) for c in convs)  # Tucker-2: the 4x4 spatial modes are kept
    # Forward = dense convolution with the reconstructed kernel = tensorly-torch's own
    # factorised forward, up to float rounding.
    from tltorch.functional.convolution import tucker_conv

    x = torch.randn(1, 64, 32, 32)
    conv = convs[1]
    dense = torch.nn.functional.conv2d(x, conv.weight.to_tensor(), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(conv(x), dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv(x), tucker_conv(x, conv.weight, conv.bias, stride=2, padding=1))


@pytest.mark.parametrize("name", ["tfd", "dwd"])
def test_tfd_and_dwd_are_smaller_and_cheaper_than_fcd(name):
    fcd = build_discriminator("fcd", num_classes=12)
    other = build_discriminator(name, num_classes=12)
    assert count_parameters(other) < count_parameters(fcd)
    assert count_macs(other, D_INPUT) < 0.7 * count_macs(fcd, D_INPUT)


def test_factorised_rank_is_validated():
    with pytest.raises(ValueError, match="rank"):
        build_discriminator("tfd", 12, rank=2.0)
    with pytest.raises(ValueError, match="fcd"):
        build_discriminator("xyz", 12)
