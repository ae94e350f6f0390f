"""The output-space discriminators D of the paper (section III-B.2), one factory each.

Every discriminator reads the segmentation softmax (N, num_classes, H, W) and returns one
source/target logit per cell of a (N, 1, ~H/32, ~W/32) map. All share AdaptSegNet's
shape: 5 layers of 4x4 stride-2 convolutions, widths ndf, 2ndf, 4ndf, 8ndf, 1, with a
LeakyReLU(0.2) after every layer but the last. They differ in how a layer convolves:

    fcd  dense nn.Conv2d (AdaptSegNet, the paper's baseline)
    tfd  Tucker-2 factorised conv from tensorly-torch (channel modes factorised, the 4x4
         spatial modes kept), run as 1x1 -> small 4x4 -> 1x1 convolutions
    cpd  CP factorised conv from tensorly-torch (the paper's suggested future work), run
         as 1x1 -> separable 4x1 / 1x4 -> 1x1 convolutions
    dwd  depthwise 4x4 stride-2 conv + pointwise 1x1 conv

    from uda_seg_core.models import build_discriminator, count_macs
    d = build_discriminator("tfd", num_classes=12, rank=0.5)
    count_macs(d, (1, 12, 720, 960))

The factorised layers are built with `implementation='factorized'`, so the forward pass
runs the small convolutions; the paper's code rebuilt the dense kernel every forward and
so saved parameters but not time. Fewer MACs are not always less time: the small 1x1
convolutions are memory-bound. Measured on the 2-core CPU, one thread, fwd+bwd at
1x12x360x480 (medians, interleaved, two runs): FCD 1.29-1.45 s, TFD 0.87-1.04 s,
DWD 0.29 s, CPD 3.6 s (its grouped 4x1/1x4 convolutions are slow on CPU).

`rank` is tensorly-torch's float rank: the fraction of the dense layer's parameters the
factorised layer keeps (0.5 = half).
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

KERNEL, STRIDE, PADDING = 4, 2, 1
NEGATIVE_SLOPE = 0.2
NUM_LAYERS = 5


def dense_conv(in_channels: int, out_channels: int, rank: float) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, KERNEL, STRIDE, PADDING)


def depthwise_separable_conv(in_channels: int, out_channels: int, rank: float) -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            depthwise=nn.Conv2d(
                in_channels, in_channels, KERNEL, STRIDE, PADDING, groups=in_channels, bias=False
            ),
            pointwise=nn.Conv2d(in_channels, out_channels, 1),
        )
    )


def _factorized_conv(factorization: str) -> Callable[[int, int, float], nn.Module]:
    def build(in_channels: int, out_channels: int, rank: float) -> nn.Module:
        import tltorch  # optional: only TFD/CPD need tensorly-torch

        if not 0.0 < rank <= 1.0:
            raise ValueError(
                f"adapt.rank must be in (0, 1] (fraction of the dense layer's parameters), got "
                f"{rank}"
            )
        # Tucker-2 (the paper's 'core tensor and two factor matrices'): only the channel
        # modes are factorised; a factor on the 4x4 spatial modes would save parameters
        # but no compute, since the spatial factors are folded into the core anyway.
        extra = {"fixed_rank_modes": "spatial"} if factorization == "tucker" else {}
        conv = tltorch.FactorizedConv(
            in_channels, out_channels, KERNEL, order=2, stride=STRIDE, padding=PADDING, bias=True,
            factorization=factorization, rank=rank, implementation="factorized", **extra,
        )
        # tensorly-torch leaves the bias uninitialised; match nn.Conv2d's default scale so
        # FCD, TFD and CPD start from comparable activations.
        fan_in = in_channels * KERNEL * KERNEL
        conv.weight.normal_(0, 1.0 / math.sqrt(3 * fan_in))
        with torch.no_grad():
            conv.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        return conv

    return build


LAYER_BUILDERS: dict[str, Callable[[int, int, float], nn.Module]] = {
    "fcd": dense_conv,
    "tfd": _factorized_conv("tucker"),
    "cpd": _factorized_conv("cp"),
    "dwd": depthwise_separable_conv,
}


def layer_widths(width: int = 64) -> list[int]:
    return [width * 2**i for i in range(NUM_LAYERS - 1)] + [1]


def build_discriminator(
    name: str, num_classes: int, width: int = 64, dropout: float = 0.0, rank: float = 0.5
) -> nn.Sequential:
    """conv1, act1, [drop1], ..., conv4, act4, [drop4], classifier.

    Dropout is nn.Dropout (element-wise), not nn.Dropout2d: the paper's p = 0.01 is "the
    probability of an element to be zeroed", and dropping whole channels at that rate
    would remove a channel of a 64-wide layer only once in ~1.6 batches.
    """
    if name not in LAYER_BUILDERS:
        raise ValueError(f"unknown discriminator '{name}'; choose from: "
                         f"{', '.join(LAYER_BUILDERS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"discriminator dropout must be in [0, 1), got {dropout}")
    make_conv = LAYER_BUILDERS[name]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = num_classes
    widths = layer_widths(width)
    for i, out_channels in enumerate(widths[:-1], start=1):
        layers[f"conv{i}"] = make_conv(in_channels, out_channels, rank)
        layers[f"act{i}"] = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        in_channels = out_channels
    layers["classifier"] = make_conv(in_channels, widths[-1], rank)
    return nn.Sequential(layers)


# name -> factory(num_classes, width=64, dropout=0.0, rank=0.5)
DISCRIMINATORS: dict[str, Callable[..., nn.Sequential]] = {
    name: functools.partial(build_discriminator, name) for name in LAYER_BUILDERS
}
