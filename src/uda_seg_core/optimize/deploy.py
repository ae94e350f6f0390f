"""`uda-seg deploy`: from an adapted checkpoint to the fastest model within an accuracy budget.

    uda-seg deploy --checkpoint runs/adapted/best.pt --data ../shared/data/CamVid-SegNet \\
        --out runs/deploy                                 # --max-loss 1.0 mIoU point
    uda-seg deploy --checkpoint C --data data/synthetic --out D --ratios 0.3,0.5 \\
        --finetune-iters 300 --calibration-frames 16 --input-size 360x480

Candidates, every one measured the same way:
- the unpruned network exported to ONNX fp32, and INT8 (static QDQ, calibrated on
  `--calibration-frames` target frames; per-channel and per-tensor weights, both measured
  unless `--per-channel` says which): the reference's own speed-ups;
- for each `--ratios` r, structured channel pruning (`optimize.structured`): r of the
  channels removed, BatchNorm statistics re-estimated on target frames, then
  `--finetune-iters` iterations of distillation from the adapted network on unlabelled
  target frames (fine-tune method 'target-distill': the adapted network's predictions are
  the only target, so the adaptation is kept and neither domain's labels are needed),
  exported fp32 and INT8 like the unpruned one;
- at an `--input-size` below the reference's evaluation size (with `--finetune-iters` > 0),
  the unpruned network after `--finetune-iters` iterations of *resolution distillation*
  (candidates 'r0.00-distilled-*'): on unlabelled target crops, the student sees each crop
  resized by input size / reference size, the adapted network the crop itself, and the
  student's scores, upsampled, are pulled to the adapted network's softmax. A network served
  at half the camera's resolution learns what the adapted one sees at the full one. The
  pruned networks' fine-tunes distil across the same resolutions at such a size.
Each candidate's mIoU is measured on the labelled `--split` (val) of `--data` at the
input size, as the node serves it (frames resized to the input size, class ids resized
back to the label's size, nearest). The reference row is the adapted fp32 network in eager
PyTorch as `uda-seg evaluate` measures it: at the checkpoint's own evaluation size
(data.eval_size; empty: the frames' own size), so an `--input-size` smaller than the
camera's pays for its lost resolution out of the budget instead of hiding it. Every
candidate and the reference are timed interleaved in one run, each at its own input size
(`inference.timing.interleaved`; ONNX Runtime and torch on the same `--threads`).
The fastest candidate (p50) within `--max-loss` mIoU points of the adapted fp32 network
is chosen; a candidate outside the budget, INT8 included, is reported as such and never
chosen. If none is within it (a tiny budget, or an `--input-size` below the reference's
that loses more than the budget on its own), nothing is served: deploy.json and deploy.md
still list every candidate and why, OUT/model.onnx is not written (one left by an earlier
run is removed, so it never disagrees with deploy.json), and the command fails naming the
closest candidate.

Writes OUT/model.onnx (the chosen candidate; metadata: class names, palette,
normalisation, input size, and 'provenance': what it came from and what it measured),
OUT/deploy.json (every candidate, the settings, the machine) and OUT/deploy.md (the
table). Finished work is kept under OUT/work/ with a stamp of the settings it was made
with (`uda_seg_core.stages`): a rerun with the same settings reuses every pruned network,
export, quantisation and evaluation and only times again (timing is never reused: every
figure in one report comes from one interleaved run); a changed setting redoes only
what depends on it. A data folder without the labelled split, or without frames to
calibrate and fine-tune on, is refused before any work.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.config import parse_size
from uda_seg_core.data import DatasetFormatError, build_dataset, detect_format, resolve_format
from uda_seg_core.evaluate import checkpoint_eval_split
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend, resolve_threads
from uda_seg_core.inference.segmenter import BackendModule
from uda_seg_core.inference.timing import interleaved, percentile
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.models import ClassIds, count_macs, count_parameters, load_model
from uda_seg_core.optimize.export import (
    calibration_images,
    export_onnx,
    metadata_from_checkpoint,
    pick_evenly,
    preprocess_frames,
    quantize_int8,
    write_metadata,
)
from uda_seg_core.optimize.structured import prune_checkpoint
from uda_seg_core.reporting import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    load_average,
    machine_description,
    markdown_table,
)
from uda_seg_core.stages import Stages

log = logging.getLogger(__name__)

DEPLOY_FORMAT = "uda_seg.deploy/1"
DEFAULT_RATIOS = (0.3, 0.5)
PER_CHANNEL_CHOICES = ("both", "on", "off")
FINETUNE_METHOD = "target-distill"
REFERENCE_ID = "reference"


class DeployError(ValueError):
    """A deploy request that cannot be carried out (missing split, bad ratio, ...)."""


class NothingWithinBudget(DeployError):
    """Every candidate was measured and none is within --max-loss (the report is written)."""


@dataclass
class DeployRequest:
    """One `uda-seg deploy` (the flags, as plain data)."""

    checkpoint: str
    data: str  # CamVid folder (either layout) or a make-synthetic output
    out: str
    max_loss: float = 1.0  # mIoU points below the adapted fp32 network
    input_size: tuple[int, int] | None = None  # None: the checkpoint's inference.input_size
    ratios: Sequence[float] = DEFAULT_RATIOS
    finetune_iters: int = 300
    calibration_frames: int = 16
    per_channel: str = "both"  # INT8 weights: both | on (per channel) | off (per tensor)
    bn_batches: int = 25  # target batches to re-estimate BatchNorm on after each cut
    split: str = "val"  # the labelled split every candidate is measured on
    eval_limit: int = 0  # only the first N images of the split (0 = all)
    threads: int = 0  # torch and ONNX Runtime threads; 0: onnx_backend.resolve_threads
    repeats: int = 20
    warmup: int = 2
    case_budget: float = 10.0  # seconds of timed runs per candidate (slow ones repeat less)
    gap_ms: float = 50.0
    device: str = "auto"  # for the fine-tune; inference is timed on the CPU
    fresh: bool = False  # redo every piece of work
    overrides: Sequence[str] = ()  # dotted config overrides for the fine-tune
    command: str = "uda-seg deploy"


# A network the candidates are exported from: (pruning ratio, distilled). (0, False) is the
# adapted checkpoint itself; (0, True) the same widths after resolution distillation (only
# at an --input-size below the reference's, with --finetune-iters); (r, False) for r > 0 is
# pruned, BatchNorm re-estimated and fine-tuned (resolution distillation there too, when the
# input size is smaller).
Network = tuple[float, bool]


def network_tag(net: Network) -> str:
    """'r0.30', 'r0.00', 'r0.00-distilled': the network's folder under OUT/work/."""
    ratio, distilled = net
    return f"r{ratio:.2f}" + ("-distilled" if distilled else "")


@dataclass
class Candidate:
    """One model that could be served: a pruning ratio in one precision."""

    id: str
    ratio: float
    precision: str  # fp32 | int8
    per_channel: bool | None  # INT8 weights per channel (None for fp32)
    file: Path
    row: dict = field(default_factory=dict)  # what was measured
    distilled: bool = False  # ratio 0 only: the unpruned network after resolution distillation

    @property
    def network(self) -> Network:
        return (self.ratio, self.distilled)


@dataclass
class Plan:
    """A checked request: where everything is, before any work starts."""

    r: DeployRequest
    out: Path
    work: Path
    root: Path  # the CamVid-format folder
    fmt: str
    size: tuple[int, int]
    ckpt_sha256: str
    threads: int
    candidates: list[Candidate] = field(default_factory=list)
    # (H, W) of the input size over the reference's evaluation size, when smaller: the
    # fine-tunes then distil from the adapted network at its own size (set by `deploy`)
    student_scale: tuple[float, float] = (1.0, 1.0)
    work_done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("pruned", "exported", "quantised", "evaluated", "reused"), 0))


# --- checking the request ----------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def target_folder(data: str | Path) -> Path:
    """The CamVid-format folder: `data` itself, or the camvid/ of a make-synthetic output."""
    root = Path(data)
    if not root.is_dir():
        raise DeployError(f"--data: folder not found: {root}")
    return root / "camvid" if detect_format(root) == "synthetic" else root


def _splits_found(fmt: str, root: Path) -> list[str]:
    found = []
    for split in ("train", "val", "test"):
        try:
            build_dataset(fmt, root, split, with_labels=True)
            found.append(split)
        except DatasetFormatError:
            pass
    return found


def check_data(r: DeployRequest) -> tuple[Path, str]:
    """The data folder and its format, refused early when it cannot serve the request: the
    labelled split to measure on, and (for calibration and the fine-tune) unlabelled frames."""
    root = target_folder(r.data)
    try:
        fmt = resolve_format("auto", root)
        evaluated = build_dataset(fmt, root, r.split, with_labels=True)
    except DatasetFormatError as exc:
        found = _splits_found(detect_format(root) or "camvid", root) if root.is_dir() else []
        raise DeployError(
            f"--data {r.data}: no labelled '{r.split}' split to choose the model on ({exc}); "
            f"labelled splits found: {', '.join(found) or 'none'}. deploy measures every "
            f"candidate on {r.split!r} and never selects on 'test': add a val split (e.g. a "
            f"few sequences moved out of train) or pass --split with another labelled split "
            f"that is not your report split") from exc
    if len(evaluated) == 0:
        raise DeployError(f"--data {r.data}: the '{r.split}' split has no images")
    needs_frames = r.calibration_frames > 0 or (
        any(x > 0 for x in r.ratios) and (r.finetune_iters > 0 or r.bn_batches > 0))
    if needs_frames:
        try:
            build_dataset(fmt, root, "train", with_labels=False)
        except DatasetFormatError as exc:
            raise DeployError(
                f"--data {r.data}: no 'train' frames to calibrate INT8 on and fine-tune the "
                f"pruned networks with ({exc}); the target's unlabelled train frames are what "
                f"both use") from exc
    return root, fmt


def check_request(r: DeployRequest) -> Plan:
    """Every refusal happens here, before anything is written."""
    if not Path(r.checkpoint).is_file():
        raise DeployError(f"--checkpoint: not found: {r.checkpoint}")
    if r.max_loss < 0:
        raise DeployError(f"--max-loss must be >= 0 mIoU points, got {r.max_loss}")
    bad = [x for x in r.ratios if not 0.0 <= float(x) < 1.0]
    if bad:
        raise DeployError(f"--ratios must each be in [0, 1), got {bad}")
    if r.per_channel not in PER_CHANNEL_CHOICES:
        raise DeployError(f"--per-channel must be one of {', '.join(PER_CHANNEL_CHOICES)}")
    if r.calibration_frames < 1:
        raise DeployError("--calibration-frames must be >= 1 (INT8 calibrates on target frames)")
    if r.repeats < 1:
        raise DeployError("--repeats must be >= 1")
    ckpt = load_checkpoint(r.checkpoint)
    size = r.input_size or tuple(ckpt.get("config", {}).get("inference", {}).get(
        "input_size", (360, 480)))
    size = parse_size(size)
    root, fmt = check_data(r)
    out = Path(r.out)
    return Plan(r, out, out / "work", root, fmt, size, sha256_of(Path(r.checkpoint)),
                resolve_threads(r.threads))


def resolution_distilled(p: Plan) -> bool:
    """Is there a distilled unpruned network: an input size below the reference's, and
    fine-tune iterations to distil with."""
    return p.student_scale != (1.0, 1.0) and p.r.finetune_iters > 0


def networks(p: Plan) -> list[Network]:
    """Unpruned first, then its distilled copy (where there is one), then each ratio."""
    ratios = sorted({round(float(x), 4) for x in p.r.ratios} - {0.0})
    return [(0.0, False), *([(0.0, True)] if resolution_distilled(p) else []),
            *((r, False) for r in ratios)]


def candidate_list(p: Plan) -> list[Candidate]:
    """Each network in fp32, then its INT8 variants."""
    variants = {"both": (True, False), "on": (True,), "off": (False,)}[p.r.per_channel]
    out = []
    for net in networks(p):
        tag, folder = network_tag(net), p.work / network_tag(net)
        out.append(Candidate(f"{tag}-fp32", net[0], "fp32", None, folder / "fp32.onnx",
                             distilled=net[1]))
        for pc in variants:
            wt = "pc" if pc else "pt"
            out.append(Candidate(f"{tag}-int8-{wt}", net[0], "int8", pc,
                                 folder / f"int8_{wt}.onnx", distilled=net[1]))
    return out


# --- the work, each piece resumable ------------------------------------------------------

def base_settings(p: Plan) -> dict:
    """What every piece of work depends on."""
    return {"checkpoint": str(Path(p.r.checkpoint).resolve()), "sha256": p.ckpt_sha256,
            "input_size": list(p.size), "torch": torch.__version__}


def pruning_settings(p: Plan, net: Network) -> dict:
    if net == (0.0, False):
        return base_settings(p)
    settings = {**base_settings(p), "ratio": net[0], "finetune_iters": p.r.finetune_iters,
                "finetune_method": FINETUNE_METHOD, "bn_batches": bn_batches_of(p, net),
                "data": str(p.root.resolve()), "overrides": list(p.r.overrides)}
    if p.student_scale != (1.0, 1.0):  # absent at full size: earlier work stays reusable
        settings["student_scale"] = list(p.student_scale)
    return settings


def bn_batches_of(p: Plan, net: Network) -> int:
    """No cut, no stale statistics: the distilled unpruned network skips the re-estimation."""
    return 0 if net[0] == 0 else p.r.bn_batches


def pruned_checkpoint(p: Plan, net: Network) -> Path:
    if net == (0.0, False):
        return Path(p.r.checkpoint)
    return p.work / network_tag(net) / "pruned.pt"


def finetune_overrides(p: Plan) -> list[str]:
    """The fine-tune reads unlabelled target frames of --data, nothing of the source."""
    return [f"data.target_root={p.root.resolve()}", f"data.target_format={p.fmt}",
            "data.num_workers=0",
            "data.limit=0", *p.r.overrides]


def make_pruned(p: Plan, stages: Stages, net: Network, progress: bool) -> None:
    if net == (0.0, False):
        return
    out = pruned_checkpoint(p, net)

    def action() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        prune_checkpoint(p.r.checkpoint, out, progress=progress, ratio=net[0],
                         finetune_iters=p.r.finetune_iters, finetune_method=FINETUNE_METHOD,
                         bn_batches=bn_batches_of(p, net), device=p.r.device,
                         student_scale=p.student_scale, overrides=finetune_overrides(p))
        p.work_done["pruned"] += 1

    _count(p, stages.run(f"prune-{network_tag(net)}", pruning_settings(p, net), [out], action,
                         say=log.info))


def _count(p: Plan, ran: bool) -> None:
    if not ran:
        p.work_done["reused"] += 1


class CalibrationFrames:
    """Target frames preprocessed for INT8 calibration, read once and only when needed."""

    def __init__(self, p: Plan, mean: Sequence[float], std: Sequence[float]):
        self.p, self.mean, self.std = p, mean, std
        self._frames: list[np.ndarray] | None = None

    def __call__(self) -> list[np.ndarray]:
        if self._frames is None:
            train = self.p.root / "train"
            files = calibration_images(train if train.is_dir() else self.p.root)
            self._frames = preprocess_frames(pick_evenly(files, self.p.r.calibration_frames),
                                             self.p.size, self.mean, self.std)
        return self._frames


def make_onnx(p: Plan, stages: Stages, c: Candidate, frames: CalibrationFrames) -> None:
    """The candidate's ONNX file: export (fp32) or quantisation of the fp32 export (INT8)."""
    settings = pruning_settings(p, c.network)
    if c.precision == "fp32":
        def action() -> None:
            model, ckpt = load_model(pruned_checkpoint(p, c.network))
            export_onnx(model.eval(), c.file, mode="pred", size=p.size,
                        metadata=metadata_from_checkpoint(ckpt, "pred", p.size))
            p.work_done["exported"] += 1
        _count(p, stages.run(f"export-{c.id}", settings, [c.file], action, say=log.info))
        return
    fp32 = c.file.with_name("fp32.onnx")
    settings = {**settings, "calibration_frames": p.r.calibration_frames,
                "per_channel": c.per_channel, "data": str(p.root.resolve())}

    def quantise() -> None:
        quantize_int8(fp32, c.file, frames(), per_channel=bool(c.per_channel))
        p.work_done["quantised"] += 1

    _count(p, stages.run(f"int8-{c.id}", settings, [c.file], quantise, say=log.info))


def eval_settings(p: Plan, c: Candidate | None, size: Sequence[int]) -> dict:
    return {"model": str(c.file if c else Path(p.r.checkpoint).resolve()),
            "model_sha256": sha256_of(c.file) if c else p.ckpt_sha256,
            "data": str(p.root.resolve()), "split": p.r.split, "limit": p.r.eval_limit,
            "input_size": [int(v) for v in size]}


def evaluate_candidate(p: Plan, stages: Stages, c: Candidate | None, dataset,
                       module: Callable[[], nn.Module], size: Sequence[int]) -> dict:
    """mIoU (and the rest of the summary) of a candidate, or of the reference (c None), on
    `dataset`, whose frames feed the network at `size` (H, W)."""
    name = c.id if c else REFERENCE_ID
    result = p.work / "eval" / f"{name}.json"

    def action() -> None:
        cm = evaluate_model(module(), dataset, "cpu", num_classes=12)
        atomic_write_json(result, {**cm.summary(), "images": len(dataset)})
        p.work_done["evaluated"] += 1

    settings = eval_settings(p, c, size)
    _count(p, stages.run(f"eval-{name}", settings, [result], action, say=log.info))
    return {**json.loads(result.read_text()), "input_size": settings["input_size"]}


def complexity_of(p: Plan, net: Network, cache: dict) -> dict:
    if net not in cache:
        model, _ = load_model(pruned_checkpoint(p, net))
        model.eval()
        cache[net] = {"params": count_parameters(model),
                      "macs": count_macs(model, (1, 3, *p.size))}
    return cache[net]


def _pruning_record(p: Plan, net: Network) -> dict:
    if net == (0.0, False):
        return {}
    ckpt = load_checkpoint(pruned_checkpoint(p, net))
    pruning = dict(ckpt.get("pruning", {}))
    ft = pruning.get("finetune", {})
    return {"scope": pruning.get("scope"), "finetune": {
        "method": ft.get("method", FINETUNE_METHOD), "iters": ft.get("iters", 0),
        "seconds": ft.get("seconds"), "final_losses": ft.get("final_losses", {}),
        "student_scale": ft.get("student_scale", [1.0, 1.0])},
        "bn_batches": pruning.get("bn_batches")}


def build_candidates(p: Plan, stages: Stages, dataset, reference_data,
                     reference_size: Sequence[int], progress: bool) -> dict:
    """Prune, export, quantise and evaluate every candidate on `dataset` (at the input size)
    and the reference on `reference_data` (at its own evaluation size, `reference_size`),
    reusing finished work; returns the reference's evaluation. Each candidate's `row` holds
    its complexity and mIoU."""
    p.candidates = candidate_list(p)
    ckpt = load_checkpoint(p.r.checkpoint)
    frames = CalibrationFrames(p, ckpt["mean"], ckpt["std"])
    nets = networks(p)
    steps = len(nets) + 2 * len(p.candidates) + 1
    bar = tqdm(total=steps, desc="deploy", dynamic_ncols=True, disable=not progress)

    def step(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    reference_model, _ = load_model(p.r.checkpoint)
    reference = evaluate_candidate(p, stages, None, reference_data,
                                   lambda: ClassIds(reference_model.eval()).eval(),
                                   reference_size)
    step("reference evaluated")
    cache: dict = {}
    for net in nets:
        make_pruned(p, stages, net, progress)
        step(f"made {network_tag(net)}")
    for c in p.candidates:
        make_onnx(p, stages, c, frames)
        step(f"{c.id} written")
    for c in p.candidates:
        summary = evaluate_candidate(p, stages, c, dataset, lambda c=c: BackendModule(
            OnnxRuntimeBackend(c.file, device="cpu", threads=p.threads), 12), p.size)
        c.row = {**complexity_of(p, c.network, cache), "miou": summary["miou"],
                 "accuracy": summary["accuracy"], **_pruning_record(p, c.network)}
        step(f"{c.id} evaluated")
    bar.close()
    reference_macs = count_macs(reference_model, (1, 3, *reference["input_size"]))
    return {**reference, **complexity_of(p, (0.0, False), cache), "macs": reference_macs}


# --- timing and choosing -----------------------------------------------------------------

def time_all(p: Plan, frame: np.ndarray, reference_frame: np.ndarray,
             progress: bool) -> dict[str, dict]:
    """p50 / p90 of every candidate (on `frame`, at the input size) and of the eager
    reference (on `reference_frame`, at its own size), interleaved in one run."""
    reference, _ = load_model(p.r.checkpoint)
    eager = ClassIds(reference.eval()).eval()
    x = torch.from_numpy(reference_frame)

    def run_eager() -> object:
        with torch.inference_mode():
            return eager(x)

    runners: dict[str, Callable[[], object]] = {REFERENCE_ID: run_eager}
    for c in p.candidates:
        backend = OnnxRuntimeBackend(c.file, device="cpu", threads=p.threads)
        runners[c.id] = lambda b=backend: b.infer(frame)
    samples = interleaved(runners, p.r.repeats, p.r.warmup, progress, gap_s=p.r.gap_ms / 1e3,
                          budget_s=p.r.case_budget)
    out = {}
    for name, values in samples.items():
        wall = [w for w, _ in values]
        out[name] = {"p50_ms": 1e3 * percentile(wall, 50), "p90_ms": 1e3 * percentile(wall, 90),
                     "samples": len(wall)}
    return out


def choose(rows: list[dict], reference_miou: float, max_loss: float) -> str:
    """The id of the fastest row within `max_loss` mIoU points of `reference_miou`; each
    row gains 'loss_points', 'within_budget', 'chosen' and 'reason'. With none within the
    budget, None: nothing is chosen (bug guarded: the unpruned fp32 export served as a
    'fallback' although, at a smaller input size, it too loses more than the budget)."""
    for row in rows:
        row["loss_points"] = 100.0 * (reference_miou - row["miou"])
        row["within_budget"] = row["loss_points"] <= max_loss + 1e-9
    ok = sorted((r for r in rows if r["within_budget"]), key=lambda r: r["p50_ms"])
    chosen = ok[0] if ok else None
    for row in rows:
        row["chosen"] = row is chosen
        if row is chosen:
            row["reason"] = "chosen: fastest within the budget"
        elif not row["within_budget"]:
            row["reason"] = (f"outside the budget: loses {row['loss_points']:.2f} points "
                             f"> {max_loss:g}")
        else:
            row["reason"] = (f"within the budget but slower: p50 {row['p50_ms']:.1f} ms vs "
                             f"{chosen['p50_ms']:.1f} ms")
    return chosen["id"] if chosen else None


# --- the report --------------------------------------------------------------------------

def write_model(p: Plan, chosen: dict, reference: dict) -> Path:
    """OUT/model.onnx: the chosen file with its provenance added to the metadata."""
    target = p.out / "model.onnx"
    provenance = {
        "made_by": "uda-seg deploy", "checkpoint": str(Path(p.r.checkpoint).resolve()),
        "checkpoint_sha256": p.ckpt_sha256, "candidate": chosen["id"],
        "pruning_ratio": chosen["ratio"], "distilled": chosen.get("distilled", False),
        "precision": chosen["precision"],
        "per_channel": chosen["per_channel"], "data": str(p.root.resolve()),
        "split": p.r.split, "miou": chosen["miou"], "reference_miou": reference["miou"],
        "reference_input_size": reference["input_size"],
        "loss_points": chosen["loss_points"], "max_loss": p.r.max_loss,
        "p50_ms": chosen["p50_ms"], "threads": p.threads, "input_size": list(p.size),
        "finetune": chosen.get("finetune"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_path(target) as tmp:
        shutil.copyfile(chosen["file"], tmp)
        write_metadata(tmp, {"provenance": json.dumps(provenance)})
    return target


CANDIDATE_HEADERS = ("candidate", "ratio", "precision", "params (M)", "GMACs", "p50 ms",
                     "p90 ms", "vs eager", "mIoU (%)", "loss (pt)", "chosen or why not")


def markdown(doc: dict) -> str:
    ref = doc["reference"]
    s = doc["settings"]
    lines = [
        "# uda-seg deploy", "", f"`{doc['command']}`", "",
        (f"Adapted checkpoint `{doc['checkpoint']['path']}`; mIoU over the 11 named classes on "
         f"{doc['data']['images']} images of the '{doc['data']['split']}' split of "
         f"`{doc['data']['root']}` at {s['input_size'][0]}x{s['input_size'][1]}; budget "
         f"{s['max_loss']:g} mIoU points below the adapted fp32 network "
         f"({100 * ref['miou']:.2f} % at its own {_size(ref)})."),
        (f"Timed interleaved in one run: {doc['machine']['cpu']}, {doc['threads']} thread(s) "
         f"(torch and ONNX Runtime; ONNX Runtime spinning "
         f"{'on' if doc['machine']['ort_spinning'] else 'off'}), batch 1, up to {s['repeats']} "
         f"repeats after {s['warmup']} warm-up; load average {doc['machine']['loadavg_start']} "
         f"at the start, {doc['machine']['loadavg_end']} at the end."),
        "",
    ]
    rows = [[f"adapted fp32, eager PyTorch at {_size(ref)} (reference)", "0.00", "fp32",
             f"{ref['params'] / 1e6:.2f}", f"{ref['macs'] / 1e9:.2f}", f"{ref['p50_ms']:.1f}",
             f"{ref['p90_ms']:.1f}", "1.00x", f"{100 * ref['miou']:.2f}", "0.00",
             "reference (not an ONNX export)"]]
    for c in doc["candidates"]:
        precision = c["precision"] + ("" if c["per_channel"] is None else
                                      (" per-channel" if c["per_channel"] else " per-tensor"))
        rows.append([f"**{c['id']}**" if c["chosen"] else c["id"], f"{c['ratio']:.2f}",
                     precision, f"{c['params'] / 1e6:.2f}", f"{c['macs'] / 1e9:.2f}",
                     f"{c['p50_ms']:.1f}", f"{c['p90_ms']:.1f}",
                     f"{c['p50_ms'] / ref['p50_ms']:.2f}x", f"{100 * c['miou']:.2f}",
                     f"{c['loss_points']:.2f}", c["reason"]])
    lines.append(markdown_table(CANDIDATE_HEADERS, rows, align="lrl" + "r" * 7 + "l"))
    served = (f"Served: `{doc['model']}` ({doc['chosen']})." if doc["chosen"] else
              f"Served: nothing: {nothing_served(doc)}")
    lines += ["", served + " Work this run: "
              + ", ".join(f"{k} {v}" for k, v in doc["work"].items()) + ".", ""]
    return "\n".join(lines)


def _size(ref: dict) -> str:
    return f"{ref['input_size'][0]}x{ref['input_size'][1]}"


def nothing_served(doc: dict) -> str:
    """Why deploy served no model, naming the closest candidate and what to change."""
    closest = min(doc["candidates"], key=lambda c: c["loss_points"])
    size = doc["settings"]["input_size"]
    return (f"no candidate is within --max-loss {doc['settings']['max_loss']:g} mIoU points "
            f"of the adapted fp32 network at {_size(doc['reference'])} (the closest, "
            f"{closest['id']} at {size[0]}x{size[1]}, loses {closest['loss_points']:.2f}); "
            f"OUT/model.onnx not written. Raise --max-loss, or deploy at a larger "
            f"--input-size; every candidate is in deploy.md.")


def report(p: Plan, reference: dict, timings: dict, dataset_len: int, load_start: str,
           seconds: float) -> dict:
    """deploy.json's document (rows chosen and explained)."""
    rows = []
    for c in p.candidates:
        rows.append({"id": c.id, "ratio": c.ratio, "distilled": c.distilled,
                     "precision": c.precision,
                     "per_channel": c.per_channel, "file": str(c.file), **c.row,
                     **timings[c.id]})
    chosen_id = choose(rows, reference["miou"], p.r.max_loss)
    ref = {"name": "adapted fp32 (eager PyTorch)", "miou": reference["miou"],
           "accuracy": reference["accuracy"], "params": reference["params"],
           "macs": reference["macs"], "input_size": reference["input_size"],
           **timings[REFERENCE_ID]}
    settings = {k: v for k, v in asdict(p.r).items()
                if k not in ("checkpoint", "data", "out", "command", "fresh")}
    settings.update(input_size=list(p.size), ratios=[float(x) for x in p.r.ratios],
                    finetune_method=FINETUNE_METHOD, overrides=list(p.r.overrides))
    return {
        "format": DEPLOY_FORMAT, "command": p.r.command,
        "checkpoint": {"path": str(p.r.checkpoint), "sha256": p.ckpt_sha256},
        "data": {"root": str(p.root), "format": p.fmt, "split": p.r.split,
                 "images": dataset_len},
        "settings": settings, "threads": p.threads,
        "machine": {**machine_description(loadavg_start=load_start),
                    "ort_spinning": os.environ.get("UDA_SEG_ORT_SPIN", "0") == "1"},
        "reference": ref, "candidates": rows, "chosen": chosen_id,
        "model": str(p.out / "model.onnx") if chosen_id else None, "work": dict(p.work_done),
        "seconds": round(seconds, 1),
    }


def student_scale(size: Sequence[int], reference_size: Sequence[int]) -> tuple[float, float]:
    """(H, W) factors from the reference's evaluation size to the input size where the input
    is smaller in both; (1, 1) otherwise (nothing to distil across resolutions)."""
    sy, sx = (float(a) / float(b) for a, b in zip(size, reference_size))
    return (sy, sx) if sy < 1 and sx < 1 else (1.0, 1.0)


def first_frame(dataset) -> np.ndarray:
    """The split's first network input as a (1, 3, H, W) float32 array, for the timing."""
    return np.ascontiguousarray(dataset[0]["image"][None].numpy(), dtype=np.float32)


# --- the whole job -----------------------------------------------------------------------

def deploy(request: DeployRequest, progress: bool = True) -> dict:
    """Check, build and measure every candidate, choose, write OUT/model.onnx, deploy.json
    and deploy.md; returns deploy.json's document."""
    started, load_start = time.perf_counter(), load_average()
    p = check_request(request)
    p.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(p.work, fresh=p.r.fresh, chained=False)
    ckpt = load_checkpoint(p.r.checkpoint)
    dataset = checkpoint_eval_split(ckpt, p.root, p.r.split, p.fmt, limit=p.r.eval_limit,
                                    eval_size=list(p.size))
    reference_data = checkpoint_eval_split(ckpt, p.root, p.r.split, p.fmt,
                                           limit=p.r.eval_limit)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(p.threads)
    try:
        reference_frame = first_frame(reference_data)  # its size: the reference's own
        p.student_scale = student_scale(p.size, reference_frame.shape[-2:])
        reference = build_candidates(p, stages, dataset, reference_data,
                                     reference_frame.shape[-2:], progress)
        timings = time_all(p, first_frame(dataset), reference_frame, progress)
    finally:
        torch.set_num_threads(previous_threads)
    doc = report(p, reference, timings, len(dataset), load_start,
                 time.perf_counter() - started)
    chosen = next((c for c in doc["candidates"] if c["chosen"]), None)
    if chosen is None:
        (p.out / "model.onnx").unlink(missing_ok=True)  # never disagrees with deploy.json
    else:
        write_model(p, chosen, doc["reference"])
    atomic_write_json(p.out / "deploy.json", doc)
    atomic_write_text(p.out / "deploy.md", markdown(doc))
    if chosen is None:
        raise NothingWithinBudget(f"{nothing_served(doc)} ({p.out / 'deploy.md'})")
    return doc
