"""`uda-seg model` / `make model CAMVID=path`: the shipped recipe trained on your labelled
frames and deployed into one `model.onnx` the node serves with no other flag.

    uda-seg model --data ../shared/data/CamVid-SegNet             # -> runs/model/model.onnx
    uda-seg model --data data/lanes --out runs/lanes data.label_set=lanes.yaml \\
        model.num_classes=3                                      # a folder with a label set

Three stages, each resumable:
1. train: `uda-seg train --config PROFILE` (config/real_pretrained.yaml: BiSeNet on
   ImageNet-pretrained EfficientNet-Lite0) on DATA's labelled train split, selected on its
   val split, into OUT/train, in its own process with its own progress bar. The profile's
   settings, then data.source_root = data.target_root = DATA, the served input size as
   data.eval_size and inference.input_size (the network is selected at the size it serves),
   then the caller's KEY=VALUE overrides. A finished run is skipped, a stopped one resumes
   from its last.pt, one whose settings changed starts again (`study.reproduce.run_state`).
2. deploy: `optimize.deploy.deploy` of OUT/train/best.pt into OUT/deploy: the unpruned
   network only (no channel pruning), ONNX fp32 and INT8 with per-channel weight scales,
   calibrated on `calibration_frames` train frames, measured on val at the input size, the
   fastest within `max_loss` mIoU points of the trained network served. Deploy reuses its
   own finished work (exports, quantisation, evaluations); only the timing runs again.
3. OUT/model.onnx: deploy's model.onnx copied atomically, and OUT/model.json: the mIoU of
   the trained network and of the served model on val, the served model's p50 latency and
   threads, the lines that serve it, and the wall time of each stage.

Everything the request needs is checked before anything is written: the profile, every
override, and DATA (its layout, a labelled train and val split under the run's label set).
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_core.config import Config, ConfigError, dump_config, load_config
from uda_seg_core.data import DatasetFormatError, build_dataset, resolve_format
from uda_seg_core.optimize.deploy import DeployRequest, deploy
from uda_seg_core.reporting import atomic_path, atomic_write_json
from uda_seg_core.study.reproduce import run_state
from uda_seg_core.train.loaders import resolve_data

__all__ = ["MODEL_FILE", "PROFILE", "ModelSettings", "make_model", "serve_lines", "summary"]

Say = Callable[[str], None]
# The shipped recipe, found beside the sources (a checkout, or an editable install).
PROFILE = Path(__file__).resolve().parents[3] / "config" / "real_pretrained.yaml"
MODEL_FILE = "model.onnx"
REPORT_FILE = "model.json"
MODEL_FORMAT = "uda_seg.model/1"
RUN_NAME = "train"


@dataclass
class ModelSettings:
    """One `uda-seg model` (the flags, as plain data)."""

    data: str  # labelled frames: CamVid (either layout) or a folder (with a label set)
    out: str = "runs/model"
    profile: str = str(PROFILE)
    input_size: tuple[int, int] = (360, 480)  # H x W the model serves (a CamVid frame)
    overrides: Sequence[str] = field(default_factory=list)  # KEY=VALUE for the training
    fresh: bool = False  # train again from scratch and redo every deploy stage
    max_loss: float = 1.0  # mIoU points the served model may lose against the trained one
    calibration_frames: int = 32
    threads: int = 0  # deploy's torch / ONNX Runtime threads (0: every usable core)
    progress: bool = True  # deploy's progress bars (training always shows its own)
    command: str = "uda-seg model"


def training_config(s: ModelSettings) -> Config:
    """The profile, the data and the input size, then the caller's overrides."""
    h, w = s.input_size
    out = Path(s.out).resolve()
    data = str(Path(s.data).resolve())
    values = [f"data.source_root={data}", f"data.target_root={data}",
              f"data.eval_size=[{h},{w}]", f"inference.input_size=[{h},{w}]",
              f"train.out_dir={out}", f"train.run_name={RUN_NAME}"]
    return load_config(s.profile, [*values, *s.overrides])


def check_request(s: ModelSettings) -> Config:
    """Every refusal before anything is written; returns the training config."""
    if not Path(s.profile).is_file():
        raise ConfigError(f"--profile: not found: {s.profile}")
    if s.max_loss < 0 or s.calibration_frames < 1:
        raise ConfigError("max_loss must be >= 0 and calibration_frames >= 1")
    if not Path(s.data).is_dir():
        raise ConfigError(f"--data {s.data}: folder not found")
    cfg = training_config(s)
    d = cfg.data
    try:  # the folder itself: its layout, and the labelled splits training needs
        fmt = resolve_format(d.source_format, d.source_root)
        for split in (*d.train_splits, d.val_split):
            if len(build_dataset(fmt, d.source_root, split, with_labels=True)) == 0:
                raise DatasetFormatError(f"the labelled '{split}' split has no images")
    except DatasetFormatError as exc:
        train = "+".join(d.train_splits)
        raise ConfigError(f"--data {s.data}: {str(exc).rstrip(' .')} (training needs "
                          f"labelled '{train}' and '{d.val_split}' splits)") from None
    resolve_data(copy.deepcopy(cfg))  # the label set against model.num_classes, ...
    return cfg


def train_stage(cfg: Config, s: ModelSettings, say: Say) -> tuple[str, float]:
    """Train, resume or skip OUT/train in its own process; (what happened, wall seconds)."""
    out = Path(s.out)
    run_dir = out / RUN_NAME
    state = run_state(run_dir, cfg)
    if s.fresh and state != "new":
        state = "changed"
    if state == "done":
        say(f"train: finished earlier, skipped ({run_dir / 'best.pt'})")
        return state, 0.0
    config_path = out / "train_config.yaml"
    base = [sys.executable, "-m", "uda_seg_core.cli", "train"]
    cmd = ([*base, "--resume", str(run_dir)] if state == "resume" else
           [*base, "--config", str(config_path), *(["--overwrite"] if state == "changed" else [])])
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, config_path)
    say(f"train ({'resumed from last.pt' if state == 'resume' else state}): "
        f"uda-seg {' '.join(cmd[3:])}")
    start = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise RuntimeError(f"training stopped: `uda-seg {' '.join(cmd[3:])}` exited with status "
                           f"{code}; run the same command again to resume from its last.pt")
    return state, time.perf_counter() - start


def deploy_stage(s: ModelSettings, checkpoint: Path) -> dict:
    """The unpruned network as ONNX fp32 and INT8 per channel, the faster one within budget."""
    request = DeployRequest(
        checkpoint=str(checkpoint), data=str(Path(s.data).resolve()),
        out=str(Path(s.out) / "deploy"), max_loss=s.max_loss, input_size=tuple(s.input_size),
        ratios=(), finetune_iters=0, calibration_frames=s.calibration_frames, per_channel="on",
        threads=s.threads, fresh=s.fresh, command=f"{s.command} (deploy stage)")
    return deploy(request, progress=s.progress)


def serve_lines(model: Path) -> dict[str, str]:
    """The commands that serve `model` (absolute: they work from any folder)."""
    path = model.resolve()
    return {"node": f"segmentation_node --ros-args -p model_path:={path}",
            "launch": f"ros2 launch uda_seg_ros segment.launch.py model_path:={path}"}


def _training_record(run_dir: Path, state: str, seconds: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics.get("best") or {}
    test = metrics.get("test") or {}
    return {"run": str(run_dir), "checkpoint": str(run_dir / "best.pt"), "state": state,
            "iterations": metrics.get("iteration"), "best_iteration": best.get("iteration"),
            "val_miou_during_training": best.get("miou"),
            "test_miou": test.get("miou"), "training_time": metrics.get("training_time"),
            "seconds": round(seconds, 1)}


def report(s: ModelSettings, state: str, seconds: dict, doc: dict) -> dict:
    """OUT/model.json's document."""
    out = Path(s.out)
    chosen = next(c for c in doc["candidates"] if c["chosen"])
    ref = doc["reference"]
    return {
        "format": MODEL_FORMAT, "command": s.command, "data": str(Path(s.data).resolve()),
        "profile": str(s.profile), "overrides": list(s.overrides),
        "input_size": list(s.input_size),
        "train": _training_record(out / RUN_NAME, state, seconds["train"]),
        "trained": {"val_miou": ref["miou"], "input_size": ref["input_size"],
                    "p50_ms": ref.get("p50_ms")},
        "served": {"file": str(out / MODEL_FILE), "candidate": chosen["id"],
                   "precision": chosen["precision"], "per_channel": chosen["per_channel"],
                   "val_miou": chosen["miou"], "loss_points": chosen["loss_points"],
                   "p50_ms": chosen["p50_ms"], "p90_ms": chosen["p90_ms"],
                   "threads": doc["threads"], "input_size": doc["settings"]["input_size"]},
        "deploy": {"report": str(out / "deploy" / "deploy.md"), "work": doc["work"],
                   "seconds": round(seconds["deploy"], 1)},
        "serve": serve_lines(out / MODEL_FILE),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def make_model(s: ModelSettings, say: Say = print) -> dict:
    """Train (resume, or skip), deploy, and write OUT/model.onnx and OUT/model.json;
    returns model.json's document."""
    started = time.perf_counter()
    cfg = check_request(s)
    out = Path(s.out)
    state, train_seconds = train_stage(cfg, s, say)
    best = out / RUN_NAME / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"training finished without {best}")
    say(f"deploy: {best} -> {out / 'deploy'} (unpruned, ONNX fp32 and INT8, "
        f"{s.input_size[0]}x{s.input_size[1]})")
    start = time.perf_counter()
    doc = deploy_stage(s, best)
    deploy_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with atomic_path(out / MODEL_FILE) as tmp:
        shutil.copyfile(doc["model"], tmp)
    seconds = {"train": train_seconds, "deploy": deploy_seconds,
               "copy": time.perf_counter() - start, "total": time.perf_counter() - started}
    result = report(s, state, seconds, doc)
    atomic_write_json(out / REPORT_FILE, result)
    return result


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def summary(doc: dict) -> str:
    """What `uda-seg model` prints at the end."""
    t, served, sec = doc["trained"], doc["served"], doc["seconds"]
    h, w = served["input_size"]
    train = ("reused (finished earlier)" if doc["train"]["state"] == "done"
             else _minutes(sec["train"]))
    loss = served["loss_points"]
    versus = (f"{loss:.2f} points below" if loss >= 0.005 else
              f"{-loss:.2f} points above" if loss <= -0.005 else "equal to")
    return "\n".join([
        f"model: {served['file']} ({served['candidate']}: ONNX {served['precision'].upper()}, "
        f"{h}x{w}; class names, palette, normalisation and input size in its metadata)",
        f"  val mIoU: trained network {100 * t['val_miou']:.2f} %, served model "
        f"{100 * served['val_miou']:.2f} % ({versus} the trained network)",
        f"  latency: p50 {served['p50_ms']:.1f} ms, p90 {served['p90_ms']:.1f} ms a frame on "
        f"{served['threads']} thread(s) (deploy's timing on this machine)",
        f"  time: train {train}, deploy {_minutes(sec['deploy'])}, total "
        f"{_minutes(sec['total'])}; figures in {Path(served['file']).parent / REPORT_FILE}",
        "serve it:",
        f"  {doc['serve']['node']}",
        f"  {doc['serve']['launch']}",
    ])
