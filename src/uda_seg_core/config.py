"""One typed config tree for every job: dataclasses with commented defaults.

Experiment YAML files hold only what differs from these defaults; the command line adds
dotted overrides (`train.lr=0.01`). An unknown key, a wrong type or a value outside a
setting's choices is an error that names the key, the value and what would work, raised
while the config is built: before a job writes anything.

    cfg = load_config("config/adapt_idda2camvid.yaml", ["adapt.discriminator=dwd"])

A setting with a fixed set of values is typed `Literal[...]`; its names are those of the
registry that implements it (models.BACKBONES, models.DISCRIMINATORS, data.DATASETS,
losses.SEGMENTATION_LOSSES, train.optim.OPTIMIZERS, pruning.PRUNE_MODES; a test keeps each
registry and its Literal equal). Devices are checked for form here (auto, cpu, cuda,
cuda:N) and for presence when a job resolves them (`runtime.resolve_device`).
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


# ImageNet statistics (RGB, 0-1 scale): the normalisation of the torchvision backbones, and
# the default of every checkpoint and exported graph that stores none of its own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite's TF-ported ImageNet weights expect (x - 127) / 128 on the 0-255 scale.
EFFICIENTNET_LITE_MEAN = (127 / 255,) * 3
EFFICIENTNET_LITE_STD = (128 / 255,) * 3
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"  # what a device setting accepts
# Keys older configs and checkpoints may hold that no longer do anything: dropped on load,
# with a warning naming them.
RETIRED_KEYS = {
    "optimise.prune_mode": "the post-training sweep runs both modes (prune-sweep --mode)",
}

log = logging.getLogger(__name__)


def check_device(value: str, where: str) -> str:
    """The form of a device setting; whether the device exists is runtime's question."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
        raise ConfigError(f"{where}: {value!r} is not a device; use {DEVICE_CHOICES}")
    return value


def parse_size(text: str | Sequence[int]) -> tuple[int, int]:
    """'360x480' (height x width) or [360, 480] -> (360, 480), both positive."""
    try:
        h, w = (int(v) for v in (text.lower().split("x") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise ConfigError(f"size {text!r} must be HEIGHTxWIDTH, e.g. 360x480") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"size {text!r} must be positive")
    return h, w


# The choices of each setting with a fixed set of values (see the module docstring).
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0",
                   "efficientnet_lite1", "efficientnet_lite2"]
DatasetFormat = Literal["auto", "camvid", "camvid_segnet", "idda", "folder"]
OptimizerName = Literal["sgd", "adam", "rmsprop", "adamw"]
SegmentationLossName = Literal["dice", "dice_per_class", "ce", "ce+dice", "ohem"]
DiscriminatorName = Literal["fcd", "tfd", "dwd", "cpd", "none"]
TargetLossName = Literal["none", "entropy", "pseudo_label"]
PruneMode = Literal["none", "fixed", "incremental"]
Device = Annotated[str, check_device]


@dataclass
class ModelConfig:
    # context path: resnet18 | resnet34 | resnet50 | resnet101 (the paper's) |
    # efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2 (ImageNet weights installable)
    backbone: Backbone = "resnet18"
    # the paper's 11 CamVid classes + Background; must equal data.label_set's class count
    num_classes: int = 12
    # ImageNet weights: '' random init, 'imagenet' (the installed weight package of an
    # EfficientNet-Lite), a local .pth path, or 'torchvision' (its cache, ResNets only)
    pretrained: str = ""
    # spatial path widths (three stride-2 conv-BN-ReLU layers, the paper's 64-128-256);
    # [] = no spatial path: the context path's own 1/8 features take its place
    spatial_channels: list[int] = field(default_factory=lambda: [64, 128, 256])
    context_channels: int = 128  # width of each ARM output (the paper's BiSeNet: 128)
    fusion_channels: int = 256  # FFM output width (BiSeNet: 256)
    head_channels: int = 128  # the main head's 3x3 conv width (BiSeNet: 128)
    # how the ARM outputs reach the FFM: concat (both at 1/8, side by side) | top_down
    # (1/32 -> 1/16 -> 1/8, each step upsampled, refined by a 3x3 conv and added)
    context_fusion: Literal["concat", "top_down"] = "concat"
    # beyond BiSeNet: width of a 1/4-resolution refinement before the classifier (the head's
    # features fused with the context path's 1/4 features); 0 = none (the paper's BiSeNet)
    detail_channels: int = 0


@dataclass
class DataConfig:
    # the classes and how each format's labels map to them: camvid12 (the paper's 12) | a
    # label set YAML (README, "Your own classes"); a run's config.yaml holds the set itself
    label_set: str | dict = "camvid12"
    # labelled domain: auto (read off the folder) | idda | camvid | camvid_segnet | folder
    source_format: DatasetFormat = "auto"
    source_root: str = "data/synthetic/idda"
    # only frames of these sequences (the name's prefix); [] = all
    source_sequences: list[str] = field(default_factory=list)
    target_format: DatasetFormat = "auto"  # unlabelled domain (labels used only for evaluation)
    target_root: str = "data/synthetic/camvid"
    # unlabelled target training frames only from these sequences, e.g. [0001TP, 0016E5] to
    # hold 0006R0 out for evaluation on a drive adaptation never saw; [] = all
    target_sequences: list[str] = field(default_factory=list)
    train_splits: list[str] = field(default_factory=lambda: ["train"])  # add 'val' for train+val
    val_split: str = "val"  # model selection; never select on test
    test_split: str = "test"
    crop_size: list[int] = field(default_factory=lambda: [720, 960])  # H, W (the paper's crop)
    # H, W of the network input for evaluation (the image is resized, the label never:
    # metrics stay at the frame's resolution); [] = the frame's own size
    eval_size: list[int] = field(default_factory=list)
    # input normalisation, RGB on the 0-1 scale: [] = what model.backbone's weights expect
    # (the normal case, see `input_normalisation`); set both only for weights of your own
    # trained with another one
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    num_workers: int = 2
    limit: int = 0  # use only the first N images of each split (0 = all); for smoke runs


@dataclass
class AugmentationConfig:
    """The paper's Table III, each row expressible here; the default is its best (Aug 3)."""

    scales: list[float] = field(default_factory=lambda: [1.0])  # random scale set before the crop
    hflip: float = 0.5  # probability of a joint horizontal flip (0 = off)
    # Gaussian blur sigma range; [] = off
    blur_sigma: list[float] = field(default_factory=lambda: [1.0, 2.0])
    blur_p: float = 1.0  # probability of blurring when blur_sigma is set
    # contrast factor range, e.g. [0.75, 1.5]
    linear_contrast: list[float] = field(default_factory=list)
    # additive Gaussian noise std range (0-255 scale)
    noise_std: list[float] = field(default_factory=list)
    noise_p: float = 0.5
    # brightness multiplier range, e.g. [0.8, 1.2]
    multiply: list[float] = field(default_factory=list)
    multiply_p: float = 0.5


@dataclass
class TrainConfig:
    # sgd | adam | rmsprop (Table IV; the paper picks SGD) | adamw (decoupled weight decay)
    optimizer: OptimizerName = "sgd"
    lr: float = 2.5e-2  # initial learning rate, poly-decayed per iteration
    momentum: float = 0.9
    weight_decay: float = 1e-4  # not applied to norms and biases
    poly_power: float = 0.9  # lr = lr0 * (1 - it / max_it) ** poly_power
    warmup_iters: int = 0  # linear lr warm-up of the segmentation network (0 = none)
    batch_size: int = 4
    epochs: int = 50
    max_iters: int = 0  # 0 = epochs * iterations per epoch
    aux_weight: float = 1.0  # alpha in eq. 4
    # the term of eq. 4: dice (eq. 3 as the paper writes it) | dice_per_class | ce | ce+dice |
    # ohem (cross entropy on the hard pixels, as BiSeNet's authors train)
    loss: SegmentationLossName = "dice"
    # per-class weights of the cross-entropy terms: none | median_frequency (each class
    # weighted by median class frequency / its frequency in the labelled training frames,
    # as SegNet trains on CamVid: thin classes count); the weights are computed once before
    # the run and recorded in class_weights
    class_balance: Literal["none", "median_frequency"] = "none"
    class_weights: list[float] = field(default_factory=list)  # [] = unweighted, or set
    seed: int = 0
    # a uda_seg checkpoint (unpruned, same backbone and classes) whose weights start the
    # segmentation network instead of random init: adaptation as a second stage after
    # source-only training ("trained on synthetic data, then adapted", the paper's sec. I)
    init_from: str = ""
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower)
    device: Device = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # mixed precision (CUDA only)
    channels_last: bool = False  # memory format (CPU and CUDA; ~10% faster steps on CPU here)
    checkpoint_every: int = 200  # iterations between resumable checkpoints
    val_every: int = 0  # iterations between validations (0 = once per epoch)
    out_dir: str = "runs"  # each run writes to out_dir/<run name>
    run_name: str = ""  # '' = derived from the settings, e.g. IDDA2CamVid_bisenet-r18_fcd


@dataclass
class AdaptConfig:
    # fcd | tfd | dwd | cpd (CP-factorised, the paper's future work) | none (no D, no L_adv:
    # adaptation by the target term below alone)
    discriminator: DiscriminatorName = "fcd"
    lambda_adv: float = 0.001  # weight of L_adv in eq. 1
    # a term on the target predictions beside (or instead of) L_adv: none | entropy (ADVENT's
    # MinEnt) | pseudo_label (self-training on the train.init_from network's confident
    # predictions, class-balanced thresholds)
    target_loss: TargetLossName = "none"
    target_weight: float = 1.0  # its weight in the generator's loss
    # pseudo_label: per class, the quantile of the teacher's confidence (on the target
    # frames it predicts as that class) above which a pixel is trusted; 0.5 = the median
    pseudo_label_quantile: float = 0.5
    # pseudo_label: the teacher's checkpoint; '' = train.init_from (the network adaptation
    # starts from). Another network may label better, e.g. one whose BatchNorm statistics
    # were re-estimated on the target frames (`uda-seg adapt-bn`)
    teacher: str = ""
    # one forward of the source and target batches together: BatchNorm normalises both
    # domains with the same statistics in training as its running statistics will at
    # inference (False: AdaptSegNet's two forwards, each domain normalised on its own)
    joint_batchnorm: bool = False
    d_lr: float = 1e-4  # Adam, same poly decay as the segmentation network
    d_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    d_width: int = 64  # channels of the first discriminator layer (doubles per layer)
    dropout: float = 0.0  # dropout after each conv+activation in D (the paper tries 0.01)
    # TFD/CPD rank: fraction of the dense layer's parameters kept (tltorch's float rank)
    rank: float = 0.5
    prune: PruneMode = "none"  # during-training pruning of D: none | fixed | incremental
    prune_amount: float = 0.2  # fixed sparsity
    prune_rate: float = 0.005  # incremental sparsity = prune_rate * epoch
    prune_keep_masks: bool = False  # False = the paper's behaviour: zeros may regrow


@dataclass
class OptimiseConfig:
    """Post-training compression of the segmentation network."""

    sparsities: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(18)])
    # `uda-seg prune-structured` (unless its flags say otherwise): the fraction of channels
    # removed, and the fine-tune iterations after the cut; a pruned checkpoint records both
    structured_ratio: float = 0.5
    finetune_iters: int = 0


@dataclass
class InferenceConfig:
    device: Device = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "fp16"] = "fp32"  # fp16 on CUDA only
    backend: str = "auto"  # auto (from the file extension) | torch | onnxruntime
    input_size: list[int] = field(default_factory=lambda: [360, 480])  # H, W fed to the network
    output_size: Literal["input", "network"] = "input"  # input (resize mask back) | network
    # CPU threads of the runtime (torch.set_num_threads / ONNX Runtime intra_op_num_threads);
    # 0: ONNX Runtime $OMP_NUM_THREADS else the usable cores, torch what the process has
    threads: int = 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    optimise: OptimiseConfig = field(default_factory=OptimiseConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


@dataclass(frozen=True)
class Normalisation:
    """What a network's weights expect of an RGB image: (x / 255 - mean) / std per channel.

    The one implementation of input normalisation: training and evaluation transforms, the
    Segmenter (and so the node), deploy calibration and the prediction grids all call it.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"normalisation needs 3 means and 3 positive stds (RGB), got "
                              f"mean={list(self.mean)} std={list(self.std)}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(x / 255 - mean) / std == x * scale - shift: one multiply and one subtract."""
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return (1.0 / (255.0 * std)).astype(np.float32), (mean / std).astype(np.float32)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 RGB (uint8, or float on the 0-255 scale) -> float32 3xHxW, contiguous."""
        scale, shift = self.scale_shift()
        x = np.array(image, dtype=np.float32)  # a copy: the caller's image is left alone
        x *= scale
        x -= shift
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def invert(self, chw: np.ndarray) -> np.ndarray:
        """float32 3xHxW normalised -> HxWx3 uint8 RGB (for pictures of what the net saw)."""
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        x = (np.asarray(chw, np.float32).transpose(1, 2, 0) * std + mean) * 255.0
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    def as_lists(self) -> tuple[list[float], list[float]]:
        return list(self.mean), list(self.std)


IMAGENET = Normalisation(IMAGENET_MEAN, IMAGENET_STD)
EFFICIENTNET_LITE = Normalisation(EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)


def backbone_normalisation(backbone: str) -> Normalisation:
    """The normalisation a backbone's ImageNet weights were trained with (random init uses
    the same, so a network can later start from either)."""
    return EFFICIENTNET_LITE if backbone.startswith("efficientnet_lite") else IMAGENET


def input_normalisation(cfg: Config) -> Normalisation:
    """The normalisation a config's network is fed with: `data.mean` / `data.std` when both
    are set (a checkpoint's own record, or weights of the user's), else the backbone's."""
    if cfg.data.mean or cfg.data.std:
        if not (cfg.data.mean and cfg.data.std):
            raise ConfigError("data.mean and data.std: set both or neither ([] = the "
                              "backbone's normalisation)")
        return Normalisation(tuple(cfg.data.mean), tuple(cfg.data.std))
    return backbone_normalisation(cfg.model.backbone)


def _nearest(key: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints widen to floats, nothing else. A
    Literal admits only its values; an Annotated type runs its checks after the base type's."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = _coerce(value, base, where)
        for check in checks:
            value = check(value, where)
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        # YAML 1.1 reads '1e-4' (no dot) as a string; it is plainly a number.
        return float(value)
    if tp is type(None) and value is None:
        return None
    is_bool_for_int = tp is int and isinstance(value, bool)
    if isinstance(tp, type) and isinstance(value, tp) and not is_bool_for_int:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")


def merge(node: Any, updates: dict, prefix: str = "") -> Any:
    """Merge a nested dict into a dataclass node in place, strictly."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(node), include_extras=True)
    names = [f.name for f in dataclasses.fields(node)]
    for key, value in updates.items():
        where = f"{prefix}{key}"
        if where in RETIRED_KEYS:
            log.warning("config key '%s' is retired and ignored: %s", where, RETIRED_KEYS[where])
            continue
        if key not in names:
            raise ConfigError(f"unknown config key '{where}'{_nearest(str(key), names)}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            merge(current, value, f"{where}.")
        else:
            setattr(node, key, _coerce(value, hints[key], where))
    return node


def parse_override(text: str) -> dict:
    """'train.lr=0.01' -> {'train': {'lr': 0.01}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict = {}
    cursor = nested
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then dotted overrides, in that order."""
    cfg = Config()
    if path:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            merge(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for text in overrides:
        merge(cfg, parse_override(text))
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict` output (e.g. stored in a checkpoint)."""
    return merge(Config(), data)


def dump_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
