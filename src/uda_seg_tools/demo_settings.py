"""The settings of `make demo` (its command line as plain data) and what they decide before
any work: the threads per child process, the training overrides, the target domain's
folder, and a --camvid folder checked for the splits the demo needs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from uda_seg_core.data import DatasetFormatError, has_split, resolve_format
from uda_seg_tools.demo_processes import DemoError


@dataclass
class DemoSettings:
    out: str = "runs/demo"
    seed: int = 0
    size: str = "120x160"  # H x W of both domains (CamVid-style 4:3)
    num_source: int = 200
    num_target: int = 100  # 60/20/20 train/val/test
    iters: int = 300  # source-only training iterations (batch 4)
    adapt_iters: int = 300  # adaptation iterations (one source + one target batch each)
    batch_size: int = 4
    unstructured: float = 0.3  # global L1 sparsity of the post-training unstructured pruning
    deploy_ratios: str = "0.2,0.4"  # channel-pruning ratios `uda-seg deploy` tries
    finetune_iters: int = 60  # distillation iterations after each cut, in deploy
    max_loss: float = 1.0  # mIoU points the deployed model may lose against the adapted one
    calibration_frames: int = 16
    bn_batches: int = 25  # target batches deploy re-estimates BatchNorm on after each cut
    deploy_repeats: int = 20  # deploy's timed runs per candidate
    # What the node serves: 'deployed' (deploy/model.onnx, the fastest within the budget) or
    # 'unstructured' (the paper's adapted + optimised model: eager PyTorch, no faster).
    serve: str = "deployed"
    compare: bool = True  # also run the 30 fps bag through the paper's model, for contrast
    fps: float = 30.0
    realtime: bool = True
    threads: int = 0  # torch/OpenMP threads per child process; 0 = auto (see choose_threads)
    camvid: str = ""  # a real CamVid folder as the target and the bag ('' = synthetic)
    camvid_split: str = ""  # the bag's split of --camvid ('' = test if present, else val)

    @property
    def hw(self) -> tuple[int, int]:
        h, w = (int(v) for v in self.size.lower().split("x"))
        return h, w


def choose_threads(requested: int) -> int:
    """Threads per process: `requested` if > 0; else 1 when the load average shows other
    jobs on the cores, and 0 (torch's default, all cores) on an idle machine.

    OpenMP threads of several processes on the same few cores spin against each other:
    here, under a load of 8 on 2 cores, a training iteration took 8 s with 2 threads and
    1.3 s with 1.
    """
    if requested > 0:
        return requested
    try:
        busy = os.getloadavg()[0] >= 1.0
    except OSError:
        busy = False
    return 1 if busy else 0


# The network the demo trains is the shipped recipe's (model, optimiser, loss): the real-data
# profile, with the demo's data, sizes and iteration counts on top. Its ImageNet weights come
# from an installed package (make setup): nothing is downloaded.
PROFILE = Path(__file__).resolve().parents[2] / "config" / "real_pretrained.yaml"


def training_overrides(s: DemoSettings, out: Path, run_name: str, iters: int) -> list[str]:
    """`--config PROFILE` and the demo's KEY=VALUE overrides of it, for train and adapt."""
    h, w = s.hw
    target = target_root(s, out)
    values = {
        "data.source_format": "idda", "data.source_root": str(out / "data" / "idda"),
        "data.target_format": "auto" if s.camvid else "camvid", "data.target_root": str(target),
        "data.crop_size": f"[{h},{w}]", "data.num_workers": 0,
        "train.batch_size": s.batch_size, "train.max_iters": iters, "train.seed": s.seed,
        "train.device": "cpu", "train.val_every": max(1, iters // 3),
        "train.checkpoint_every": iters, "train.out_dir": str(out / "runs"),
        "train.run_name": run_name, "inference.input_size": f"[{h},{w}]",
    }
    if s.camvid:  # real frames are resized to the network size, as the sim frames are made
        values["data.eval_size"] = f"[{h},{w}]"
    else:  # the synthetic frames are the network's size already
        values["data.eval_size"] = "[]"
    return ["--config", str(PROFILE), *(f"{k}={v}" for k, v in values.items())]


def target_root(s: DemoSettings, out: Path) -> Path:
    """The target domain's CamVid-format folder: --camvid (read in place), else the
    synthetic real-style frames."""
    return Path(s.camvid).resolve() if s.camvid else out / "data" / "camvid"


def check_camvid(s: DemoSettings) -> str:
    """Before any work: --camvid must be a CamVid folder (either layout) with the labelled val
    split training selects on and deploy measures on, and the bag's split; returns that split."""
    root = Path(s.camvid)
    try:
        fmt = resolve_format("auto", root)
    except DatasetFormatError as exc:
        raise DemoError(f"--camvid: {exc}") from None
    if fmt not in ("camvid", "camvid_segnet"):
        raise DemoError(f"--camvid {root}: looks like '{fmt}', not a CamVid folder")
    split = s.camvid_split or ("test" if has_split(fmt, root, "test") else "val")
    for needed, why in (("train", "the unlabelled target frames"),
                        ("val", "model selection and deploy's measurements"),
                        (split, "the bag and the live evaluation")):
        if not has_split(fmt, root, needed):
            raise DemoError(f"--camvid {root}: no labelled '{needed}' split ({why} need it)")
    return split
