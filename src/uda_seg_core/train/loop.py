"""The training loop shared by `uda-seg train` and `uda-seg adapt`, and its helpers.

One loop (`fit`) serves both commands: each builds its networks, optimisers and a step
function (`supervised.supervised_step`, `adversarial.adversarial_step`) and hands them
over in a `Trainer`. The loop owns everything around the step:

- the run directory `train.out_dir/<run name>` with the resolved `config.yaml`,
  `metrics.json`, TensorBoard scalars (`tb/`) and the checkpoints `last.pt` (every
  `train.checkpoint_every` iterations and at the end: weights, optimisers, schedules,
  grad scalers, RNG states, iteration) and `best.pt` (best target-val mIoU);
- data: loaders that can start at any iteration (a seeded DistributedSampler per epoch,
  skipping what was already seen), cycled so the shorter domain repeats;
- validation on the target val split (model selection, never on test) and the final
  target-test evaluation of the best weights;
- timing: seconds per iteration and per epoch (the paper's training-time column);
- resume: `--resume RUN_DIR` restores all of the above, so a run killed at any moment
  loses at most one checkpoint interval;
- distributed training under `torchrun` (gloo on CPU, nccl on GPU): only rank 0 writes.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from uda_seg_core.config import Config, ConfigError, dump_config, load_config, to_dict
from uda_seg_core.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

log = logging.getLogger(__name__)

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PROGRESS_LOSSES = ("seg", "adv", "d")  # shown on the progress bar; every loss goes to TensorBoard
DATASET_NAMES = {"idda": "IDDA", "camvid": "CamVid", "camvid_segnet": "CamVid"}


# --------------------------------------------------------------------------- processes


@dataclass
class DistInfo:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> the local GPU if there is one, else CPU; 'cuda' -> this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available; use "
                              f"train.device=cpu (or auto)")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    return torch.device(name)


def setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), or run
    alone when those variables are absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), resolve_device(device_name)
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def cleanup_distributed() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def wrap_ddp(module: nn.Module, dist: DistInfo, device: torch.device,
             find_unused_parameters: bool = False) -> nn.Module:
    if not dist.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        tdist.barrier()


# --------------------------------------------------------------------------- randomness


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool) -> None:
    """train.deterministic: same inputs -> same weights, at some cost in speed."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) generator states, as checkpoint-safe data
    (numpy's key array becomes a tensor so `weights_only=True` loading accepts it)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(dist: DistInfo) -> list[dict]:
    """Every rank's RNG state (collective: all ranks must call it)."""
    state = rng_state()
    if not dist.enabled:
        return [state]
    gathered: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(gathered, state)
    return gathered


# --------------------------------------------------------------------------- data


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (seeded permutation per epoch, one shard per rank) that can
    start an epoch part-way: the first `skip` indices of this rank's shard are dropped,
    which is how a resumed run continues inside an epoch without re-reading images."""

    def __init__(self, dataset: Dataset, dist: DistInfo, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle,
                         seed=seed, drop_last=dist.world_size > 1)
        self.skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class LoaderCycle:
    """Full batches of one domain, epoch after epoch, positioned by a global iteration.

    Iteration i reads batch i mod B of epoch i // B (B = full batches per rank and
    epoch), so `seek(i)` puts a fresh or resumed run at exactly the batch the
    uninterrupted run would read next. Each epoch gets its own sampler permutation and
    tells the dataset's seeded transforms the epoch, so augmentations repeat exactly.
    """

    def __init__(self, dataset: Dataset, batch_size: int, dist: DistInfo, seed: int,
                 num_workers: int = 0, pin_memory: bool = False, name: str = "data"):
        from uda_seg_core.data import seed_worker

        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.name = name
        self.sampler = ResumableSampler(dataset, dist, shuffle=True, seed=seed)
        self.batches_per_epoch = self.sampler.num_samples // batch_size
        if self.batches_per_epoch == 0:
            raise ConfigError(
                f"{name}: {len(dataset)} images give no full batch of train.batch_size="
                f"{batch_size} on each of {dist.world_size} process(es); lower train.batch_size "
                f"or use more images (data.limit={len(dataset)}?)"
            )
        # A private generator for worker seeds: the DataLoader would otherwise draw them
        # from the global torch RNG, so a resumed run would shift every later random draw.
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=num_workers, drop_last=True, pin_memory=pin_memory,
                                 worker_init_fn=seed_worker, generator=self.generator)
        self.epoch = 0
        self.position = 0
        self._iterator = None

    def seek(self, iteration: int) -> None:
        self.epoch, self.position = divmod(iteration, self.batches_per_epoch)
        self._iterator = None

    def _start_epoch(self) -> None:
        from uda_seg_core.data import set_epoch

        self.sampler.set_epoch(self.epoch)
        self.sampler.skip = self.position * self.batch_size
        self.generator.manual_seed(self.seed * 100_003 + self.epoch)
        set_epoch(self.dataset, self.epoch)
        self._iterator = iter(self.loader)

    def next(self) -> dict:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._iterator = None
        if self._iterator is None:
            self._start_epoch()
        batch = next(self._iterator)
        self.position += 1
        return batch


def build_train_dataset(cfg: Config, fmt: str, root: str, seed: int, with_labels: bool,
                        sequences: list[str] | None = None) -> Dataset:
    from uda_seg_core.data import build_dataset
    from uda_seg_core.data.transforms import build_transforms

    transform = build_transforms(cfg.augmentation, cfg.data, train=True, seed=seed)
    return build_dataset(fmt, root, cfg.data.train_splits, transform=transform, limit=cfg.data.limit,
                         with_labels=with_labels, sequences=sequences or ())


def build_eval_dataset(cfg: Config, split: str) -> Dataset:
    """The labelled target split used for validation ('val') or the final report ('test')."""
    from uda_seg_core.data import build_dataset
    from uda_seg_core.data.transforms import build_transforms

    transform = build_transforms(cfg.augmentation, cfg.data, train=False)
    return build_dataset(cfg.data.target_format, cfg.data.target_root, split, transform=transform,
                         limit=cfg.data.limit)


def resolve_data(cfg: Config) -> bool:
    """Before anything is written: read 'auto' formats off the folders (the resolved
    format is what config.yaml records), check that the target val split exists (model
    selection needs it) and say whether the target has a test split. A dataset without
    one (a user's own train/val data, or CamVid with its test split withheld) trains,
    selects on val and reports val; its metrics.json says the test was skipped."""
    from uda_seg_core.data import has_split, resolve_format

    d = cfg.data
    d.source_format = resolve_format(d.source_format, d.source_root)
    d.target_format = resolve_format(d.target_format, d.target_root)
    if not has_split(d.target_format, d.target_root, d.val_split):
        raise ConfigError(f"data.val_split={d.val_split!r} not found (with labels) in "
                          f"{d.target_root}: model selection needs a labelled target val split")
    return has_split(d.target_format, d.target_root, d.test_split)


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


# --------------------------------------------------------------------------- optimisers


def build_segmentation_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD (the paper's choice), Adam or RMSprop on BiSeNet's parameter groups (Table IV);
    weight decay only where the model's groups allow it."""
    t = cfg.train
    groups = unwrap(model).param_groups(t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=t.lr, momentum=t.momentum)
    raise ConfigError(f"train.optimizer must be sgd, adam or rmsprop, got {t.optimizer!r}")


def build_discriminator_optimizer(discriminator: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """Adam, lr 1e-4, betas (0.9, 0.99), as in the paper (section IV-B)."""
    a = cfg.adapt
    if len(a.d_betas) != 2:
        raise ConfigError(f"adapt.d_betas must hold two numbers, got {a.d_betas}")
    return torch.optim.Adam(unwrap(discriminator).parameters(), lr=a.d_lr, betas=tuple(a.d_betas))


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a pass-through everywhere else."""
    return torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")


def autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=amp and device.type == "cuda")


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --------------------------------------------------------------------------- run directory


def short_backbone(backbone: str) -> str:
    return backbone.replace("resnet", "r")


def dataset_name(fmt: str, root: str) -> str:
    """'IDDA' / 'CamVid' for a format; for an unresolved 'auto', read off the folder if it
    exists, else guessed from its name (data/synthetic/idda -> IDDA)."""
    if fmt == "auto":
        from uda_seg_core.data import DatasetFormatError, resolve_format

        try:
            fmt = resolve_format(fmt, root)
        except DatasetFormatError:
            fmt = next((f for f in ("idda", "camvid") if f in Path(root).name.lower()), fmt)
    return DATASET_NAMES.get(fmt, fmt)


def derive_run_name(cfg: Config, command: str) -> str:
    """IDDA2CamVid_bisenet-r18_fcd, CamVid_bisenet-r101_supervised, ... from the settings."""
    if cfg.train.run_name:
        return cfg.train.run_name
    src = dataset_name(cfg.data.source_format, cfg.data.source_root)
    tgt = dataset_name(cfg.data.target_format, cfg.data.target_root)
    same_domain = (cfg.data.source_format, cfg.data.source_root) == (cfg.data.target_format,
                                                                      cfg.data.target_root)
    model = f"bisenet-{short_backbone(cfg.model.backbone)}"
    if command == "adapt":
        parts = [f"{src}2{tgt}", model, cfg.adapt.discriminator]
        if cfg.adapt.dropout > 0:
            parts.append(f"drop{cfg.adapt.dropout:g}")
        if cfg.adapt.prune != "none":
            parts.append(f"prune-{cfg.adapt.prune}")
    else:
        parts = [src if same_domain else f"{src}2{tgt}", model,
                 "supervised" if same_domain else "source-only"]
    if cfg.train.optimizer != "sgd":
        parts.append(cfg.train.optimizer)
    if cfg.train.seed != 0:
        parts.append(f"seed{cfg.train.seed}")
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", "_".join(parts))


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def load_run_config(args: Any) -> tuple[Config, Path | None]:
    """The config of a new run (--config + overrides) or of a resumed one (the run's own
    config.yaml + overrides)."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"cannot resume {run_dir}: {path} not found (is it a run directory "
                                  f"written by uda-seg train/adapt?)")
        return load_config(path, overrides), run_dir
    return load_config(args.config, overrides), None


def prepare_run_dir(cfg: Config, command: str, resume_dir: Path | None, overwrite: bool,
                    dist: DistInfo) -> Path:
    if resume_dir is not None:
        return resume_dir
    run_dir = Path(cfg.train.out_dir) / derive_run_name(cfg, command)
    if (run_dir / CHECKPOINT_LAST).exists() and not overwrite:
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                          f"start again with --overwrite, or set train.run_name")
    barrier(dist)  # every rank has checked before rank 0 touches the folder
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT_LAST, CHECKPOINT_BEST, METRICS_FILE):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)  # old curves would mix with the new
        dump_config(cfg, run_dir / CONFIG_FILE)
    return run_dir


def add_run_arguments(parser) -> None:
    """Arguments shared by `uda-seg train` and `uda-seg adapt`."""
    parser.add_argument("--config", help="experiment YAML (differences from the defaults)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last.pt (its config.yaml is used)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again even if the run directory already holds a run")
    parser.add_argument("--stop-at", type=int, metavar="N",
                        help="stop after iteration N with a resumable last.pt (train in pieces)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. train.lr=0.01 adapt.discriminator=dwd")


# --------------------------------------------------------------------------- the loop


@dataclass
class Trainer:
    """What one command trains: networks, optimisation state and the step function.

    `step(batches) -> dict of float losses` gets one batch per entry of `loaders`
    (already on the device). The 'source' loader defines the epochs.
    """

    command: str  # 'train' | 'adapt'
    model: nn.Module  # G, possibly DDP-wrapped
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    scalers: dict[str, torch.amp.GradScaler]
    loaders: dict[str, LoaderCycle]
    step: Callable[[dict[str, dict]], dict[str, float]]
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)  # {'discriminator': D}
    # Called with the 1-based number of the epoch about to start; returns scalars to log.
    epoch_hooks: list[Callable[[int], dict]] = field(default_factory=list)
    # Called after a resume with the iteration it restarts from (e.g. re-attach pruning masks).
    resume_hooks: list[Callable[[int], None]] = field(default_factory=list)
    state_dict_of: Callable[[str, nn.Module], dict] = field(
        default=lambda name, module: unwrap(module).state_dict())


@dataclass
class LoopState:
    iteration: int = 0
    best_miou: float = -1.0
    best_iteration: int = -1
    history: list[dict] = field(default_factory=list)  # one entry per validation
    epochs: list[dict] = field(default_factory=list)  # one entry per finished epoch
    train_seconds: float = 0.0  # time spent in iterations (not validation or checkpoints)
    timed_iterations: int = 0


def total_iterations(cfg: Config, trainer: Trainer) -> int:
    per_epoch = trainer.loaders["source"].batches_per_epoch
    return cfg.train.max_iters or cfg.train.epochs * per_epoch


def resumable_state(trainer: Trainer, state: LoopState, rng: list[dict], max_iters: int) -> dict:
    return {
        "training_state": {
            "command": trainer.command,
            "iteration": state.iteration,
            "max_iters": max_iters,
            "best_miou": state.best_miou,
            "best_iteration": state.best_iteration,
            "history": state.history,
            "epochs": state.epochs,
            "train_seconds": state.train_seconds,
            "timed_iterations": state.timed_iterations,
        },
        "modules": {name: trainer.state_dict_of(name, m) for name, m in trainer.extra_modules.items()},
        "optimizers": {name: opt.state_dict() for name, opt in trainer.optimizers.items()},
        "schedulers": {name: s.state_dict() for name, s in trainer.schedulers.items()},
        "scalers": {name: s.state_dict() for name, s in trainer.scalers.items()},
        "rng": rng,
    }


def restore(trainer: Trainer, path: Path, cfg: Config, dist: DistInfo, device: torch.device) -> LoopState:
    """Load last.pt into the trainer; any mismatch is a CheckpointError naming the file."""
    ckpt = load_checkpoint(path, map_location=device)
    ts = ckpt.get("training_state")
    if ts is None:
        raise CheckpointError(f"{path} holds weights only, not a resumable training state "
                              f"(resume from a run directory's {CHECKPOINT_LAST})")
    if ts.get("command") != trainer.command:
        raise CheckpointError(f"{path} was written by `uda-seg {ts.get('command')}`, not "
                              f"`uda-seg {trainer.command}`; resume it with that command")
    for key in ("backbone", "num_classes"):
        stored, wanted = ckpt["model_config"].get(key), getattr(cfg.model, key)
        if stored != wanted:
            raise CheckpointError(f"{path}: checkpoint has model.{key}={stored!r} but the config asks "
                                  f"for {wanted!r}; do not override model settings on resume")
    try:
        unwrap(trainer.model).load_state_dict(ckpt["state_dict"])
        for name, module in trainer.extra_modules.items():
            if name not in ckpt["modules"]:
                raise KeyError(f"no state for the {name}")
            unwrap(module).load_state_dict(ckpt["modules"][name])
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        for name, sched in trainer.schedulers.items():
            sched.load_state_dict(ckpt["schedulers"][name])
        for name, scaler in trainer.scalers.items():
            scaler.load_state_dict(ckpt["scalers"][name])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} does not fit this run's networks/optimisers: {first}. Was it "
                              f"written with another discriminator or model? Check config.yaml") from exc
    rng = ckpt.get("rng") or []
    if len(rng) == dist.world_size:
        set_rng_state(rng[dist.rank])
    elif dist.is_main:
        log.warning("%s was written by %d process(es), this run has %d: random streams are "
                    "re-seeded, so the continuation is not bit-identical", path, len(rng),
                    dist.world_size)
    state = LoopState(iteration=int(ts["iteration"]), best_miou=float(ts["best_miou"]),
                      best_iteration=int(ts["best_iteration"]), history=list(ts["history"]),
                      epochs=list(ts["epochs"]), train_seconds=float(ts["train_seconds"]),
                      timed_iterations=int(ts["timed_iterations"]))
    for hook in trainer.resume_hooks:
        hook(state.iteration)
    return state


def _format_duration(seconds: float) -> str:
    """mm:ss (or h:mm:ss), like the paper's training-time column."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def metrics_document(cfg: Config, trainer: Trainer, state: LoopState, run_dir: Path, max_iters: int,
                     dist: DistInfo, device: torch.device, test: dict | None) -> dict:
    per_epoch = trainer.loaders["source"].batches_per_epoch
    sec_per_it = state.train_seconds / state.timed_iterations if state.timed_iterations else None
    best = next((h for h in state.history if h["iteration"] == state.best_iteration), None)
    return {
        "run": run_dir.name,
        "command": trainer.command,
        "iteration": state.iteration,
        "max_iters": max_iters,
        "iterations_per_epoch": per_epoch,
        "world_size": dist.world_size,
        "device": str(device),
        "seconds_per_iteration": sec_per_it,
        "seconds_per_epoch": sec_per_it * per_epoch if sec_per_it else None,
        "training_time": _format_duration(sec_per_it * max_iters) if sec_per_it else None,
        "epochs": state.epochs,
        "history": state.history,
        "best": best,
        "test": test,
    }


def _scalar_summary(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, (int, float))}


def fit(cfg: Config, trainer: Trainer, run_dir: Path, dist: DistInfo, device: torch.device,
        resume: bool = False, stop_at: int | None = None) -> dict:
    """Train to `max_iters` (or stop early at `stop_at`, checkpointing there), validating on
    the target val split; then evaluate the best weights on the target test split.
    Returns the metrics document (also written to run_dir/metrics.json by rank 0)."""
    from tqdm import tqdm

    from uda_seg_core.evaluate import evaluate_model

    max_iters = total_iterations(cfg, trainer)
    state = restore(trainer, run_dir / CHECKPOINT_LAST, cfg, dist, device) if resume else LoopState()
    val_set = build_eval_dataset(cfg, cfg.data.val_split)
    writer = None
    if dist.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=state.iteration if resume else None)
    for loader in trainer.loaders.values():
        loader.seek(state.iteration)
    source = trainer.loaders["source"]
    per_epoch = source.batches_per_epoch
    val_every = cfg.train.val_every or per_epoch
    model = trainer.model
    end = max_iters if stop_at is None else min(stop_at, max_iters)

    def checkpoint(path: Path) -> None:
        rng = gather_rng_states(dist)
        if dist.is_main:
            save_checkpoint(path, model, cfg, **resumable_state(trainer, state, rng, max_iters))

    def write_metrics(test: dict | None = None) -> dict:
        doc = metrics_document(cfg, trainer, state, run_dir, max_iters, dist, device, test)
        if dist.is_main:
            write_json_atomic(run_dir / METRICS_FILE, doc)
        return doc

    def validate() -> None:
        cm = evaluate_model(unwrap(model), val_set, device, distributed=dist.enabled,
                            amp=cfg.train.amp, channels_last=cfg.train.channels_last)
        summary = cm.summary()
        epoch = state.iteration / per_epoch
        state.history.append({"iteration": state.iteration, "epoch": round(epoch, 3), **summary})
        if writer is not None:
            for key, value in _scalar_summary(summary).items():
                writer.add_scalar(f"val/{key}", value, state.iteration)
        miou = summary["miou"] if summary["miou"] is not None else -1.0  # None: no class present
        if miou > state.best_miou:
            state.best_miou, state.best_iteration = float(miou), state.iteration
            if dist.is_main:
                save_checkpoint(run_dir / CHECKPOINT_BEST, model, cfg, iteration=state.iteration,
                                val=_scalar_summary(summary))
        write_metrics()
        model.train()

    model.train()
    for module in trainer.extra_modules.values():
        module.train()
    bar = tqdm(total=end, initial=state.iteration, disable=not dist.is_main, dynamic_ncols=True,
               desc=run_dir.name, mininterval=1.0)
    epoch_start_time, epoch_start_seconds = None, state.train_seconds
    warm = False  # the first iteration after a (re)start pays for allocation; not timed
    while state.iteration < end:
        if state.iteration % per_epoch == 0:
            epoch_number = state.iteration // per_epoch + 1
            for hook in trainer.epoch_hooks:
                for key, value in (hook(epoch_number) or {}).items():
                    if writer is not None:
                        writer.add_scalar(key, value, state.iteration)
            epoch_start_time, epoch_start_seconds = time.perf_counter(), state.train_seconds
        t0 = time.perf_counter()
        batches = {name: to_device(loader.next(), device, cfg.train.channels_last)
                   for name, loader in trainer.loaders.items()}
        losses = trainer.step(batches)
        for sched in trainer.schedulers.values():
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        if warm:
            state.train_seconds += elapsed
            state.timed_iterations += 1
        warm = True
        state.iteration += 1
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite loss at iteration {state.iteration}: {losses}; "
                                     f"lower train.lr or disable train.amp")
        lrs = {f"lr/{name}": current_lr(opt) for name, opt in trainer.optimizers.items()}
        if writer is not None:
            for key, value in {**{f"loss/{k}": v for k, v in losses.items()}, **lrs}.items():
                writer.add_scalar(key, value, state.iteration)
        bar.update(1)
        bar.set_postfix({**{k: f"{v:.3g}" for k, v in losses.items() if k in PROGRESS_LOSSES},
                         **{k.split("/")[1] + "_lr": f"{v:.2e}" for k, v in lrs.items()}}, refresh=False)
        if state.iteration % per_epoch == 0 and epoch_start_time is not None:
            wall = time.perf_counter() - epoch_start_time
            state.epochs.append({"epoch": state.iteration // per_epoch, "iteration": state.iteration,
                                 "train_seconds": round(state.train_seconds - epoch_start_seconds, 4),
                                 "wall_seconds": round(wall, 4)})
            if writer is not None:
                writer.add_scalar("time/seconds_per_epoch", wall, state.iteration)
        if state.iteration % val_every == 0 or state.iteration == max_iters:
            validate()
        if state.iteration % cfg.train.checkpoint_every == 0 or state.iteration == end:
            checkpoint(run_dir / CHECKPOINT_LAST)
    bar.close()
    if state.iteration < max_iters:  # stopped early on request: resumable from last.pt
        if writer is not None:
            writer.close()
        return write_metrics()
    test = final_test(cfg, trainer, run_dir, dist, device)
    if writer is not None:
        for key, value in _scalar_summary(test).items():
            writer.add_scalar(f"test/{key}", value, state.iteration)
        writer.close()
    return write_metrics(test)


def final_test(cfg: Config, trainer: Trainer, run_dir: Path, dist: DistInfo, device: torch.device) -> dict:
    """Target-test metrics of the weights selected on val (best.pt), never selected on test;
    a target without a test split reports that it was skipped."""
    from uda_seg_core.data import has_split
    from uda_seg_core.evaluate import evaluate_model

    if not has_split(cfg.data.target_format, cfg.data.target_root, cfg.data.test_split):
        note = (f"no '{cfg.data.test_split}' split in {cfg.data.target_root}: selected and "
                f"reported on '{cfg.data.val_split}' only")
        if dist.is_main:
            print(f"\n{run_dir.name}: {note}")
        return {"split": cfg.data.test_split, "skipped": note}
    barrier(dist)  # best.pt is complete before any rank reads it
    best = run_dir / CHECKPOINT_BEST
    model = unwrap(trainer.model)
    if best.exists():
        ckpt = load_checkpoint(best, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
    test_set = build_eval_dataset(cfg, cfg.data.test_split)
    cm = evaluate_model(model, test_set, device, distributed=dist.enabled, amp=cfg.train.amp,
                        channels_last=cfg.train.channels_last)
    summary = cm.summary()
    if dist.is_main:
        print(f"\n{run_dir.name}: target {cfg.data.test_split} split, weights of "
              f"{best.name if best.exists() else 'the last iteration'}\n{cm.table()}")
    return {"split": cfg.data.test_split, "checkpoint": best.name, **summary}


def launch(command: str, args: Any, build: Callable[..., Trainer]) -> dict:
    """The whole of `uda-seg train|adapt`: config, processes, run directory, training, test."""
    cfg, resume_dir = load_run_config(args)
    has_test = resolve_data(cfg)
    dist, device = setup_distributed(cfg.train.device)
    try:
        configure_determinism(cfg.train.deterministic)
        seed_everything(cfg.train.seed)  # identical initial weights on every rank
        run_dir = prepare_run_dir(cfg, command, resume_dir, getattr(args, "overwrite", False), dist)
        trainer = build(cfg, dist, device)
        if dist.rank:
            seed_everything(cfg.train.seed + dist.rank)  # independent random streams per rank
        if dist.is_main:
            log.info("run %s: %s", run_dir, json.dumps(to_dict(cfg.train)))
            if not has_test:
                log.warning("%s has no '%s' split: the run selects and reports on '%s' only",
                            cfg.data.target_root, cfg.data.test_split, cfg.data.val_split)
        return fit(cfg, trainer, run_dir, dist, device, resume=resume_dir is not None,
                   stop_at=getattr(args, "stop_at", None))
    finally:
        cleanup_distributed()


def run_command(command: str, args: Any, build: Callable[..., Trainer]) -> int:
    """`launch` for the CLI: configuration, data and checkpoint problems become one clear
    line on stderr and exit status 2 instead of a traceback."""
    import sys

    from uda_seg_core.data import DatasetFormatError

    try:
        launch(command, args, build)
    except (ConfigError, CheckpointError, DatasetFormatError) as exc:
        print(f"uda-seg {command}: {exc}", file=sys.stderr)
        return 2
    return 0
