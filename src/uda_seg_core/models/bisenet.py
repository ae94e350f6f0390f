"""BiSeNet (Yu et al., ECCV 2018): the real-time segmentation network G of the paper.

Two paths meet in a Feature Fusion Module:
- spatial path: three stride-2 conv-BN-ReLU layers (64-128-256 channels by default,
  `model.spatial_channels`), 1/8 resolution, keeps the detail; with `spatial_channels: []`
  the context path's own 1/8 features take its place (no extra computation: a pretrained
  encoder's 1/8 stage already holds the detail);
- context path: a torchvision ResNet (18/34/50/101) or an ImageNet-pretrained
  EfficientNet-Lite (0/1/2) down to 1/32 (`backbones.py`); an Attention Refinement Module
  (ARM) on the 1/16 and 1/32 features and a global-average-pool tail added to the 1/32
  ARM output give the large receptive field.
The fused 1/8 features go through a small head and an x8 bilinear upsample to the input
size. Two auxiliary heads on the 1/16 and 1/32 context features supervise the context path
in training (eq. 4 of the paper).

Output modes (`aux_mode`, attribute or `forward` argument):
    'train' -> (main, aux16, aux32) logits, all (N, C, H, W) at input resolution
    'eval'  -> logits (N, C, H, W)
    'pred'  -> class ids (N, H, W) int64 (argmax inside the graph keeps ONNX export trivial)
    'scores' -> the classifier's output at the head's own resolution (N, C, H/8, W/8; H/4 with
               the detail refinement), before the final upsample ('eval' is its upsample)
    None    -> 'train' while `model.training`, else 'eval'

    from uda_seg_core.models import BiSeNet
    model = BiSeNet(num_classes=12, backbone="efficientnet_lite0", pretrained="imagenet").eval()
    logits = model(torch.randn(1, 3, 720, 960))  # (1, 12, 720, 960)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uda_seg_core.config import ModelConfig
from uda_seg_core.models.backbones import build_context_path, load_backbone_weights

AUX_MODES = ("train", "eval", "pred", "scores")
# How the two ARM outputs reach the FFM: 'concat' (both upsampled to 1/8 and concatenated;
# this project's first BiSeNet) or 'top_down' (BiSeNet's own code: the 1/32 context
# upsampled to 1/16, refined, added to the 1/16 one, upsampled to 1/8, refined)
CONTEXT_FUSIONS = ("concat", "top_down")
CONTEXT_CHANNELS = 128  # width of each context branch after its ARM (the paper's BiSeNet)
SPATIAL_CHANNELS = (64, 128, 256)
FUSION_CHANNELS = 256
HEAD_CHANNELS = 128
AUX_HEAD_CHANNELS = 64


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SpatialPath(nn.Sequential):
    """Three conv(3x3, stride 2)-BN-ReLU layers: 1/8 resolution, rich spatial detail."""

    def __init__(self, channels: tuple[int, ...] = SPATIAL_CHANNELS):
        layers, in_channels = [], 3
        for out_channels in channels:
            layers.append(ConvBNReLU(in_channels, out_channels, 3, stride=2))
            in_channels = out_channels
        super().__init__(*layers)
        self.out_channels = in_channels


class AttentionRefinement(nn.Module):
    """ARM: refine a context feature with a channel attention vector from its global pool.

    A 3x3 conv-BN-ReLU first projects to CONTEXT_CHANNELS so the fusion has the same width
    for every backbone (ResNet-101's 1/32 features have 2048 channels). The attention
    branch (pool -> 1x1 conv -> sigmoid) has no BatchNorm: on a 1x1 map with batch size 1
    training-mode BN is undefined, and the last batch of an epoch may hold one image.
    """

    def __init__(self, in_channels: int, out_channels: int = CONTEXT_CHANNELS):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(out_channels, out_channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x * self.attention(x)


class GlobalContext(nn.Module):
    """The global-average-pool tail of the context path: one vector of the whole scene,
    broadcast-added to the 1/32 ARM output (no BN, for the same reason as in the ARM)."""

    def __init__(self, in_channels: int, out_channels: int = CONTEXT_CHANNELS):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(self.pool(x)))


class FeatureFusion(nn.Module):
    """FFM: concatenate spatial and context features, conv-BN-ReLU, then re-weight the
    channels with a squeeze-excitation vector and add the result back (f + f * w)."""

    def __init__(self, in_channels: int, out_channels: int = FUSION_CHANNELS, reduction: int = 4):
        super().__init__()
        self.fuse = ConvBNReLU(in_channels, out_channels, 1)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_channels, out_channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels // reduction, out_channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(torch.cat([spatial, context], dim=1))
        return fused + fused * self.attention(fused)


class DetailRefinement(nn.Module):
    """Beyond BiSeNet (`model.detail_channels` > 0): the main head's 1/8 features upsampled
    to 1/4 and fused with the context path's own 1/4 features (a 1x1 projection) by a 3x3
    conv-BN-ReLU, so the classifier sees poles and signs a few pixels wide at 1/4 instead
    of 1/8. Cheap: the 1/4 map of a 360x480 frame is 90x120."""

    def __init__(self, head_channels: int, detail_in: int, channels: int):
        super().__init__()
        self.project = ConvBNReLU(detail_in, channels, 1)
        self.fuse = ConvBNReLU(head_channels + channels, channels, 3)

    def forward(self, head: torch.Tensor, feat4: torch.Tensor) -> torch.Tensor:
        up = _upsample(head, feat4.shape[-2:])
        return self.fuse(torch.cat([up, self.project(feat4)], dim=1))


class SegmentationHead(nn.Sequential):
    """conv3x3-BN-ReLU then a 1x1 classifier; upsampling is done by BiSeNet.forward."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__(ConvBNReLU(in_channels, mid_channels, 3),
                         nn.Conv2d(mid_channels, num_classes, 1))


def _upsample(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    # An explicit size (not scale_factor=8) so any input size comes back exactly, even
    # when it is not divisible by 32.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BiSeNet(nn.Module):
    AUX_MODES = AUX_MODES

    def __init__(
        self,
        num_classes: int = 12,
        backbone: str = "resnet18",
        pretrained: str = "",
        aux_mode: str | None = None,
        spatial_channels: Sequence[int] = SPATIAL_CHANNELS,
        context_channels: int = CONTEXT_CHANNELS,
        fusion_channels: int = FUSION_CHANNELS,
        head_channels: int = HEAD_CHANNELS,
        context_fusion: str = "concat",
        detail_channels: int = 0,
    ):
        super().__init__()
        if context_fusion not in CONTEXT_FUSIONS:
            raise ValueError(f"model.context_fusion must be one of {', '.join(CONTEXT_FUSIONS)}, "
                             f"got {context_fusion!r}")
        if len(spatial_channels) not in (0, 3):
            raise ValueError(f"model.spatial_channels: three widths (the spatial path's stride-2 "
                             f"layers, e.g. [64, 128, 256]) or [] for none, got "
                             f"{list(spatial_channels)}")
        widths = [*spatial_channels, context_channels, fusion_channels, head_channels]
        if any(int(w) <= 0 for w in widths) or detail_channels < 0:
            raise ValueError(f"BiSeNet widths must be > 0, got spatial {list(spatial_channels)}, "
                             f"context {context_channels}, fusion {fusion_channels}, head "
                             f"{head_channels} (detail: >= 0, got {detail_channels})")
        self.num_classes = num_classes
        self.backbone = backbone
        self.aux_mode = aux_mode
        self.context_path = build_context_path(backbone)
        # no spatial path: the context path's 1/8 features carry the detail instead
        self.spatial_path = SpatialPath(tuple(spatial_channels)) if spatial_channels else None
        spatial_out = (self.spatial_path.out_channels if self.spatial_path is not None
                       else self.context_path.channels8)
        self.arm16 = AttentionRefinement(self.context_path.channels16, context_channels)
        self.arm32 = AttentionRefinement(self.context_path.channels32, context_channels)
        self.global_context = GlobalContext(self.context_path.channels32, context_channels)
        self.context_fusion = context_fusion
        if context_fusion == "top_down":  # BiSeNet's own: 1/32 -> 1/16 -> 1/8, refined
            self.refine32 = ConvBNReLU(context_channels, context_channels, 3)
            self.refine16 = ConvBNReLU(context_channels, context_channels, 3)
        context_in = context_channels * (1 if context_fusion == "top_down" else 2)
        self.ffm = FeatureFusion(spatial_out + context_in, fusion_channels)
        self.head = SegmentationHead(fusion_channels, head_channels, num_classes)
        self.detail = None
        if detail_channels > 0:  # the classifier then reads the 1/4 refinement
            self.detail = DetailRefinement(head_channels, self.context_path.channels4,
                                           detail_channels)
            self.head[-1] = nn.Conv2d(detail_channels, num_classes, 1)
        self.aux_head16 = SegmentationHead(context_channels, AUX_HEAD_CHANNELS, num_classes)
        self.aux_head32 = SegmentationHead(context_channels, AUX_HEAD_CHANNELS, num_classes)
        if pretrained:
            load_backbone_weights(self.context_path, backbone, pretrained)
        else:
            self._init_new_layers()

    def _init_new_layers(self) -> None:
        # From random init: the same scheme as torchvision's ResNet, so both paths start on
        # the same footing. Beside a pretrained context path the new layers keep PyTorch's
        # default init (smaller): measured on real CamVid (Lite0, 600 iterations, no
        # auxiliary terms) 49.0 val mIoU against 45.1 with this scheme.
        for module in self.children():
            if module is self.context_path:
                continue
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, aux_mode: str | None = None):
        mode = aux_mode or self.aux_mode or ("train" if self.training else "eval")
        if mode not in AUX_MODES:
            raise ValueError(f"unknown aux_mode '{mode}'; choose from: {', '.join(AUX_MODES)}")
        size = x.shape[-2:]
        feat4, feat8, feat16, feat32 = self.context_path(x)
        spatial = self.spatial_path(x) if self.spatial_path is not None else feat8
        context16 = self.arm16(feat16)
        context32 = self.arm32(feat32) + self.global_context(feat32)
        at_1_8 = spatial.shape[-2:]
        if self.context_fusion == "top_down":
            # each coarser context is upsampled one level, refined by a 3x3 conv and added
            # to the finer one; the auxiliary heads read the refined 1/16 and 1/8 maps
            context32 = self.refine32(_upsample(context32, feat16.shape[-2:]))
            context16 = self.refine16(_upsample(context16 + context32, at_1_8))
            context = context16
        else:
            context = torch.cat([_upsample(context16, at_1_8), _upsample(context32, at_1_8)],
                                dim=1)
        hidden = self.head[0](self.ffm(spatial, context))
        if self.detail is not None:
            hidden = self.detail(hidden, feat4)
        scores = self.head[-1](hidden)  # at the head's own resolution (1/8, or 1/4 with detail)
        if mode == "scores":
            return scores
        logits = _upsample(scores, size)
        if mode == "train":
            return (
                logits,
                _upsample(self.aux_head16(context16), size),
                _upsample(self.aux_head32(context32), size),
            )
        if mode == "pred":
            return logits.argmax(dim=1)
        return logits

    def module_groups(self) -> dict[str, list[nn.Module]]:
        """The parts the paper prunes one at a time (post-training pruning per module)."""
        return {
            "spatial_path": [self.spatial_path] if self.spatial_path is not None else [],
            "context_path": [self.context_path, self.global_context],
            "arm": [self.arm16, self.arm32,
                    *([self.refine32, self.refine16] if self.context_fusion == "top_down"
                      else [])],
            "ffm": [self.ffm],
            "heads": [self.head, self.aux_head16, self.aux_head32,
                      *([self.detail] if self.detail is not None else [])],
        }

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser groups: weight decay on conv/linear weights only, none on norms and
        biases (decaying a BN scale or a bias only fights the normalisation)."""
        decay, no_decay = [], []
        for param in self.parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 else decay).append(param)
        return [
            {"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]


def build_segmentation_model(model_cfg: ModelConfig) -> BiSeNet:
    """The segmentation network G a config describes (BiSeNet, the paper's only one)."""
    return BiSeNet(num_classes=model_cfg.num_classes, backbone=model_cfg.backbone,
                   pretrained=model_cfg.pretrained, spatial_channels=model_cfg.spatial_channels,
                   context_channels=model_cfg.context_channels,
                   fusion_channels=model_cfg.fusion_channels,
                   head_channels=model_cfg.head_channels,
                   context_fusion=model_cfg.context_fusion,
                   detail_channels=model_cfg.detail_channels)


def class_ids(logits: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) scores -> (N, H, W) uint8 class ids: the dtype of a mask (every class id
    fits; 255 stays free for 'ignore'), a quarter of int32's bytes to copy or publish."""
    return logits.argmax(dim=1).to(torch.uint8)


class ClassIds(nn.Module):
    """A segmentation network with the argmax inside, uint8 ids out: what a pred-mode ONNX
    graph computes. Takes BiSeNet (logits from its 'eval' mode) or a torchvision
    segmentation model (its 'out' entry)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x, aux_mode="eval") if hasattr(self.net, "aux_mode") else self.net(x)
        if isinstance(out, dict):  # torchvision segmentation models
            out = out["out"]
        return class_ids(out)
