"""One typed config tree for every job: dataclasses with commented defaults.

Experiment YAML files hold only what differs from these defaults; the command line adds
dotted overrides (`train.lr=0.01`). An unknown key or a wrong type is an error that names
the key and the nearest valid one, never a silent default.

    cfg = load_config("config/adapt_idda2camvid.yaml", ["adapt.discriminator=dwd"])
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # context path: resnet18 | resnet34 | resnet50 | resnet101
    num_classes: int = 12  # the paper's 11 CamVid classes + Background
    pretrained: str = ""  # ImageNet weights: '' random init, a .pth path, or 'torchvision' (cache only)


@dataclass
class DataConfig:
    source_format: str = "auto"  # labelled domain: auto (read off the folder) | idda | camvid | camvid_segnet
    source_root: str = "data/synthetic/idda"
    source_sequences: list[str] = field(default_factory=list)  # only these sequences (name prefix); [] = all
    target_format: str = "auto"  # unlabelled domain (labels used only for evaluation)
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
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # ImageNet, RGB
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    num_workers: int = 2
    limit: int = 0  # use only the first N images of each split (0 = all); for smoke runs


@dataclass
class AugmentationConfig:
    """The paper's Table III, each row expressible here; the default is its best (Aug 3)."""

    scales: list[float] = field(default_factory=lambda: [1.0])  # random scale set before the crop
    hflip: float = 0.5  # probability of a joint horizontal flip (0 = off)
    blur_sigma: list[float] = field(default_factory=lambda: [1.0, 2.0])  # Gaussian blur sigma range; [] = off
    blur_p: float = 1.0  # probability of blurring when blur_sigma is set
    linear_contrast: list[float] = field(default_factory=list)  # contrast factor range, e.g. [0.75, 1.5]
    noise_std: list[float] = field(default_factory=list)  # additive Gaussian noise std range (0-255 scale)
    noise_p: float = 0.5
    multiply: list[float] = field(default_factory=list)  # brightness multiplier range, e.g. [0.8, 1.2]
    multiply_p: float = 0.5


@dataclass
class TrainConfig:
    optimizer: str = "sgd"  # sgd | adam | rmsprop (Table IV); the paper picks SGD
    lr: float = 2.5e-2  # initial learning rate, poly-decayed per iteration
    momentum: float = 0.9
    weight_decay: float = 1e-4  # not applied to norms and biases
    poly_power: float = 0.9  # lr = lr0 * (1 - it / max_it) ** poly_power
    batch_size: int = 4
    epochs: int = 50
    max_iters: int = 0  # 0 = epochs * iterations per epoch
    aux_weight: float = 1.0  # alpha in eq. 4
    # the term of eq. 4: dice (eq. 3 as the paper writes it) | dice_per_class | ce | ce+dice
    loss: str = "dice"
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # mixed precision (CUDA only)
    channels_last: bool = False  # memory format (CUDA only)
    checkpoint_every: int = 200  # iterations between resumable checkpoints
    val_every: int = 0  # iterations between validations (0 = once per epoch)
    out_dir: str = "runs"  # each run writes to out_dir/<run name>
    run_name: str = ""  # '' = derived from the settings, e.g. IDDA2CamVid_bisenet-r18_fcd


@dataclass
class AdaptConfig:
    discriminator: str = "fcd"  # fcd | tfd | dwd | cpd (CP-factorised, the paper's future work)
    lambda_adv: float = 0.001  # weight of L_adv in eq. 1
    d_lr: float = 1e-4  # Adam, same poly decay as the segmentation network
    d_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    d_width: int = 64  # channels of the first discriminator layer (doubles per layer)
    dropout: float = 0.0  # dropout after each conv+activation in D (the paper tries 0.01)
    rank: float = 0.5  # TFD/CPD rank: fraction of the dense layer's parameters kept (tltorch float rank)
    prune: str = "none"  # during-training pruning of D: none | fixed | incremental
    prune_amount: float = 0.2  # fixed sparsity
    prune_rate: float = 0.005  # incremental sparsity = prune_rate * epoch
    prune_keep_masks: bool = False  # False = the paper's behaviour: zeros may regrow


@dataclass
class OptimiseConfig:
    """Post-training compression of the segmentation network."""

    prune_mode: str = "global"  # unstructured PTP: module | global
    sparsities: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(18)])
    structured_ratio: float = 0.0  # channel-pruning ratio with torch-pruning (0 = off)
    finetune_iters: int = 0  # short fine-tune after structured pruning


@dataclass
class InferenceConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 (CUDA only)
    backend: str = "auto"  # auto (from the file extension) | torch | onnxruntime
    input_size: list[int] = field(default_factory=lambda: [360, 480])  # H, W fed to the network
    output_size: str = "input"  # input (resize mask back) | network


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    optimise: OptimiseConfig = field(default_factory=OptimiseConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def _nearest(key: str, options: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; ints widen to floats, nothing else."""
    origin = typing.get_origin(tp)
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
    if tp is type(None) and value is None:
        return None
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")


def merge(node: Any, updates: dict, prefix: str = "") -> Any:
    """Merge a nested dict into a dataclass node in place, strictly."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    for key, value in updates.items():
        where = f"{prefix}{key}"
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
