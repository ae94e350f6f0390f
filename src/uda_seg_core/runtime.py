"""Where and how a job runs: the device, the processes of a torchrun job, random number
generators and mixed precision. Every job (training, fine-tune, evaluation, serving)
uses these; none of them knows about models or data.

    device = resolve_device("auto")                  # 'cuda' or 'cpu'; one error for a bad name
    dist, device = setup_distributed("auto")         # joins torchrun's process group, if any
    seed_everything(0); state = rng_state(); set_rng_state(state)
    with autocast(device, amp=True): ...             # fp16 on CUDA only; no-op elsewhere
    with amp_step(optimizer, scaler) as backward:    # every training step's update
        backward(loss)
"""
from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from uda_seg_core.config import DEVICE_CHOICES, ConfigError

# --------------------------------------------------------------------------- device


class DeviceError(ConfigError):
    """A device name that is no device, or a device this machine does not have."""


def resolve_device(name: str = "auto", local_rank: int | None = None,
                   error: type[Exception] = DeviceError) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' -> 'cuda:<local_rank>' when
    a torchrun rank is given. A CUDA device that is not there, or a name that is no device,
    raises `error` (each caller's own exception type) saying what would work."""
    device = (name or "auto").strip().lower()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
            raise error(f"device {device!r} asked for, but CUDA is not available ({build}); "
                        f"use device 'cpu' or 'auto'")
        index, count = device.partition(":")[2], torch.cuda.device_count()
        if index and (not index.isdigit() or int(index) >= count):
            raise error(f"device {device!r}: there are {count} CUDA devices "
                        f"(cuda:0 .. cuda:{count - 1})")
        if device == "cuda" and local_rank is not None:
            device = f"cuda:{local_rank}"
        return device
    raise error(f"unknown device {name!r}; use {DEVICE_CHOICES}")


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """Every tensor of a batch on `device` (images in channels_last when asked)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


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


def setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), or run
    alone when those variables are absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), torch.device(resolve_device(device_name, local_rank=0))
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(resolve_device(device_name, info.local_rank))
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


# --------------------------------------------------------------------------- mixed precision


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a pass-through everywhere else."""
    return torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")


def autocast(device: torch.device, amp: bool):
    """fp16 autocast on CUDA when `amp`; a no-op context everywhere else."""
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=amp and device.type == "cuda")


@contextlib.contextmanager
def amp_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             max_grad_norm: float | None = None,
             ) -> Iterator[Callable[[torch.Tensor], None]]:
    """One optimiser update under loss scaling, for every training step: clear the
    gradients, let the body backpropagate with the `backward(loss)` it is given (which scales
    the loss first), then unscale and clip to `max_grad_norm` (when given), step and update
    the scale. With no scaler or a disabled one (CPU, or amp off) this is zero_grad,
    backward, step.

        with amp_step(opt_g, scaler) as backward:
            loss_seg = ...; backward(loss_seg)   # one backward per forward: each loss is
            loss_adv = ...; backward(loss_adv)   # backpropagated as soon as it exists

    The gradients of every `backward` add up into the one step. If the body raises, the
    optimiser does not step and the scale stays as it was."""
    if scaler is None:
        scaler = grad_scaler(torch.device("cpu"), False)
    optimizer.zero_grad(set_to_none=True)

    def backward(loss: torch.Tensor) -> None:
        scaler.scale(loss).backward()

    yield backward
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(optimizer)  # an enabled scaler skips it when a gradient is inf or nan
    scaler.update()
