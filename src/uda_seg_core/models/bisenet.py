"""BiSeNet (Yu et al., ECCV 2018): the real-time segmentation network G of the paper.

Two paths meet in a Feature Fusion Module:
- spatial path: three stride-2 conv-BN-ReLU layers (64-128-256 channels), 1/8 resolution,
  keeps the detail;
- context path: a torchvision ResNet (18/34/50/101) down to 1/32; an Attention Refinement
  Module (ARM) on the 1/16 and 1/32 features and a global-average-pool tail added to the
  1/32 ARM output give the large receptive field.
The fused 1/8 features go through a small head and an x8 bilinear upsample to the input
size. Two auxiliary heads on the 1/16 and 1/32 context features supervise the context path
in training (eq. 4 of the paper).

Output modes (`aux_mode`, attribute or `forward` argument):
    'train' -> (main, aux16, aux32) logits, all (N, C, H, W) at input resolution
    'eval'  -> logits (N, C, H, W)
    'pred'  -> class ids (N, H, W) int64 (argmax inside the graph keeps ONNX export trivial)
    None    -> 'train' while `model.training`, else 'eval'

    from uda_seg_core.models import BiSeNet
    model = BiSeNet(num_classes=12, backbone="resnet18", pretrained="").eval()
    logits = model(torch.randn(1, 3, 720, 960))  # (1, 12, 720, 960)
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from uda_seg_core.config import ModelConfig

BACKBONES: dict[str, str] = {  # name -> torchvision weights enum with the ImageNet weights
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}
AUX_MODES = ("train", "eval", "pred")
CONTEXT_CHANNELS = 128  # width of each context branch after its ARM
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


class ContextPath(nn.Module):
    """A torchvision ResNet without its classifier; returns the 1/16 and 1/32 features.

    Submodules keep torchvision's names (conv1, bn1, layer1..layer4) so an ImageNet
    state dict loads into it unchanged (its `fc.*` entries are dropped).
    """

    def __init__(self, backbone: str = "resnet18"):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; choose from: {', '.join(BACKBONES)}")
        resnet = getattr(torchvision.models, backbone)(weights=None)
        self.conv1, self.bn1 = resnet.conv1, resnet.bn1
        self.relu, self.maxpool = resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )
        self.channels32 = resnet.fc.in_features  # 512 (BasicBlock) or 2048 (Bottleneck)
        self.channels16 = self.channels32 // 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feat16 = self.layer3(self.layer2(self.layer1(x)))
        feat32 = self.layer4(feat16)
        return feat16, feat32


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
    def __init__(
        self,
        num_classes: int = 12,
        backbone: str = "resnet18",
        pretrained: str = "",
        aux_mode: str | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.aux_mode = aux_mode
        self.spatial_path = SpatialPath()
        self.context_path = ContextPath(backbone)
        self.arm16 = AttentionRefinement(self.context_path.channels16)
        self.arm32 = AttentionRefinement(self.context_path.channels32)
        self.global_context = GlobalContext(self.context_path.channels32)
        self.ffm = FeatureFusion(self.spatial_path.out_channels + 2 * CONTEXT_CHANNELS)
        self.head = SegmentationHead(FUSION_CHANNELS, HEAD_CHANNELS, num_classes)
        self.aux_head16 = SegmentationHead(CONTEXT_CHANNELS, AUX_HEAD_CHANNELS, num_classes)
        self.aux_head32 = SegmentationHead(CONTEXT_CHANNELS, AUX_HEAD_CHANNELS, num_classes)
        self._init_new_layers()
        if pretrained:
            load_backbone_weights(self.context_path, backbone, pretrained)

    def _init_new_layers(self) -> None:
        # Same scheme as torchvision's ResNet, so both paths start on the same footing.
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
        spatial = self.spatial_path(x)
        feat16, feat32 = self.context_path(x)
        context16 = self.arm16(feat16)
        context32 = self.arm32(feat32) + self.global_context(feat32)
        at_1_8 = spatial.shape[-2:]
        context = torch.cat([_upsample(context16, at_1_8), _upsample(context32, at_1_8)], dim=1)
        logits = _upsample(self.head(self.ffm(spatial, context)), size)
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
            "spatial_path": [self.spatial_path],
            "context_path": [self.context_path, self.global_context],
            "arm": [self.arm16, self.arm32],
            "ffm": [self.ffm],
            "heads": [self.head, self.aux_head16, self.aux_head32],
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
                   pretrained=model_cfg.pretrained)


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


def torchvision_cache_path(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `backbone` once downloaded."""
    weights = getattr(torchvision.models, BACKBONES[backbone]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def load_backbone_weights(context_path: ContextPath, backbone: str, pretrained: str) -> None:
    """Load ImageNet weights into the context path from a local file; never downloads.

    `pretrained` is a path to a torchvision ResNet state dict (.pth), or 'torchvision' for
    torchvision's own cache file if it is already on disk.
    """
    if pretrained == "torchvision":
        path = torchvision_cache_path(backbone)
        if not path.is_file():
            weights = f"{BACKBONES[backbone]}.IMAGENET1K_V1"
            raise FileNotFoundError(
                f"pretrained='torchvision': no cached ImageNet weights for {backbone} at {path}. "
                f"Nothing is downloaded at run time; fetch them once with `python -c "
                f"\"import torchvision; "
                f"torchvision.models.{backbone}(weights='{weights.split('.')[-1]}')\"` or set "
                f"model.pretrained to a local .pth file, or to '' for random init."
            )
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {path} (model.pretrained)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict (name -> tensor), got "
                        f"{type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the ImageNet classifier
    expected = context_path.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path}: does not fit the {backbone} context path (is it a torchvision {backbone} "
            f"state dict?). missing keys: {_first(missing)}; unexpected keys: "
            f"{_first(unexpected)}; wrong shapes: {_first(wrong_shape)}"
        )
    context_path.load_state_dict(state)


def _first(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
