"""The deploy request, checked before any work, and the candidates it asks for.

`check_request` refuses what cannot be carried out (a missing checkpoint, a bad ratio, data
without the labelled split or without frames to calibrate on) before anything is written
and returns a `Plan`: where everything is, the input size, the threads. `networks` and
`candidate_list` say which networks (unpruned, resolution-distilled, pruned at each ratio)
and which ONNX files (fp32, INT8 per channel / per tensor) will be measured.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.config import parse_size
from uda_seg_core.data import DatasetFormatError, build_dataset, detect_format, resolve_format
from uda_seg_core.inference.onnx_backend import resolve_threads

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


def student_scale(size: Sequence[int], reference_size: Sequence[int]) -> tuple[float, float]:
    """(H, W) factors from the reference's evaluation size to the input size where the input
    is smaller in both; (1, 1) otherwise (nothing to distil across resolutions)."""
    sy, sx = (float(a) / float(b) for a, b in zip(size, reference_size))
    return (sy, sx) if sy < 1 and sx < 1 else (1.0, 1.0)
