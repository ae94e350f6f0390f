"""`uda-seg benchmark`: inference speed of every backend and of the alternatives, in one run.

    uda-seg benchmark                                      # random BiSeNet-R18, 360x480
    uda-seg benchmark --checkpoint runs/x/best.pt --pruned runs/x/p30.pt,runs/x/p50.pt \
        --data data/synthetic --resolutions 360x480,720x960 --out runs/benchmark
    make benchmark                                         # benchmarks/inference_speed.py

Rows, for each resolution (batch 1, argmax inside every graph, uint8 ids out):
- a reference fp32 GEMM (torch.mm, N x N): the machine's measured peak in this run;
- BiSeNet eager PyTorch fp32; ONNX Runtime fp32; ONNX Runtime INT8 (static QDQ,
  calibrated on target-train frames); structured channel pruning at two ratios (given
  as checkpoints with --pruned, else pruned here without fine-tune); unstructured 50 %
  global L1 (the paper's kind of pruning: same dense work, for contrast);
- torchvision's LRASPP-MobileNetV3-Large, DeepLabV3-MobileNetV3-Large and FCN-ResNet50
  with 12 classes and random weights (what a user would pick instead; speed only);
- when the base network is not BiSeNet-R18: BiSeNet-R18 eager fp32 with random weights, the
  yardstick (the report tells the base network's p50 as a fraction of it).

Columns: latency p50/p90 (wall clock) and p50 process CPU time (which counts spinning
worker threads too, but not time lost to other processes), throughput (1 / p50),
multiply-accumulates (torch's operator FLOP counter: convolutions and matmuls), parameters,
achieved GFLOP/s (2 x MACs / p50) and its fraction of the GEMM row, and the mIoU on the
target test split, val where the folder has none (needs --checkpoint and data). All cases
run interleaved: every round runs every case once in a random order with a short pause
between cases, so a change in machine load hits them alike and the ratios hold better on a
shared machine (slow cases get fewer repeats, --case-budget). PyTorch and ONNX Runtime both
use `--threads` threads (default: every core this process may use).

Writes OUT/benchmark.json and OUT/benchmark.md (the machine, the settings and one table per
resolution). The figures are reported, not judged: the targets set for them are checked
by benchmarks/inference_speed.py (`make benchmark`), not here.
"""
from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision.models.segmentation as tvseg
from torch import nn

from uda_seg_core.checkpoint import load_checkpoint, save_checkpoint
from uda_seg_core.config import Config, parse_size
from uda_seg_core.data import detect_format, has_split
from uda_seg_core.evaluate import checkpoint_eval_split
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.inference.timing import interleaved, percentile, timed
from uda_seg_core.inference.torch_backend import BackendModule
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.models import ClassIds, build_segmentation_model, count_macs, load_model
from uda_seg_core.optimize.export import (
    calibration_images,
    export_onnx,
    metadata_from_checkpoint,
    pick_evenly,
    preprocess_frames,
    quantize_int8,
)
from uda_seg_core.optimize.structured import prune_channels
from uda_seg_core.pruning import prune_permanently
from uda_seg_core.reporting import (
    atomic_write_json,
    atomic_write_text,
    available_cores,
    load_average,
    machine_description,
    markdown_table,
)

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.3, 0.5)
ALTERNATIVES = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")
ALTERNATIVE_NAMES = {
    "lraspp_mobilenet_v3_large": "LRASPP-MobileNetV3-L",
    "deeplabv3_mobilenet_v3_large": "DeepLabV3-MobileNetV3-L",
    "fcn_resnet50": "FCN-ResNet50",
}
GEMM_SIZES = (1024, 2048, 3072)


@dataclass
class Case:
    """One row: something to time on an input of a given size, and what it is."""

    name: str
    runtime: str  # torch | onnxruntime
    precision: str  # fp32 | int8
    make_runner: Callable[[tuple[int, int]], Callable[[], object]]  # size -> zero-argument call
    macs: Callable[[tuple[int, int]], int | None] = lambda size: None
    params: int | None = None
    miou: float | None = None
    note: str = ""
    # stable id of the row: eager, ort, int8, pruned0, pruned1, unstructured, gemm, ...
    key: str = ""
    extra: dict = field(default_factory=dict)


# --- small parts -------------------------------------------------------------------------

def parse_resolutions(text: str) -> list[tuple[int, int]]:
    """'360x480,720x960' -> [(360, 480), (720, 960)]."""
    return [parse_size(part) for part in text.split(",") if part.strip()]


def measure_gemm_peak(sizes: Sequence[int] = GEMM_SIZES, repeats: int = 3) -> dict:
    """fp32 torch.mm throughput for a few square sizes; the best is the machine's peak."""
    scan = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        times = [timed(lambda a=a, b=b: torch.mm(a, b))[0] for _ in range(repeats)]
        scan.append({"n": n, "seconds": min(times), "gflops": 2 * n**3 / min(times) / 1e9})
    best = max(scan, key=lambda s: s["gflops"])
    return {"scan": scan, "best_n": best["n"], "peak_gflops": best["gflops"]}


def torch_runner(model: nn.Module) -> Callable[[tuple[int, int]], Callable[[], object]]:
    model = ClassIds(model).eval()

    def make(size: tuple[int, int]) -> Callable[[], object]:
        x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
        x = torch.from_numpy(x)

        def run() -> object:
            with torch.inference_mode():
                return model(x)

        return run

    return make


def ort_runner(backend) -> Callable[[tuple[int, int]], Callable[[], object]]:
    def make(size: tuple[int, int]) -> Callable[[], object]:
        x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
        return lambda: backend.infer(x)

    return make


def macs_of(model: nn.Module) -> Callable[[tuple[int, int]], int]:
    cache: dict[tuple[int, int], int] = {}

    def macs(size: tuple[int, int]) -> int:
        if size not in cache:
            cache[size] = count_macs(model, (1, 3, *size))
        return cache[size]

    return macs


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- data --------------------------------------------------------------------------------

def target_root(data: str | Path | None) -> Path | None:
    """The CamVid-format target folder inside `data` (a make-synthetic output or a CamVid root)."""
    if not data:
        return None
    root = Path(data)
    fmt = detect_format(root)
    if fmt == "synthetic":
        return root / "camvid"
    if fmt in ("camvid", "camvid_segnet"):
        return root
    raise FileNotFoundError(f"--data {root}: not a make-synthetic output or a CamVid folder "
                            f"(expected camvid/ and idda/ inside, or train/ test/ with *_labels/)")


def miou_of(model: nn.Module, dataset) -> float:
    return float(evaluate_model(model, dataset, "cpu").miou())


# --- building the cases ------------------------------------------------------------------

def load_base(checkpoint: str | None, backbone: str) -> tuple[nn.Module, dict, Path]:
    """(model, checkpoint dict, checkpoint path); without a checkpoint a random BiSeNet is
    saved to a temporary checkpoint so every later step takes the same path."""
    if checkpoint:
        model, ckpt = load_model(checkpoint)
        return model.eval(), ckpt, Path(checkpoint)
    cfg = Config()
    cfg.model.backbone = backbone
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model).eval()
    path = Path(tempfile.mkdtemp(prefix="uda_seg_bench_")) / "random.pt"
    save_checkpoint(path, model, cfg)
    return model, load_checkpoint(path), path


def short(backbone: str) -> str:
    return backbone.replace("resnet", "R")


@dataclass
class Base:
    """The model every row derives from, and how to measure a row's mIoU."""

    model: nn.Module
    ckpt: dict
    name: str  # BiSeNet-R18
    dataset: object | None  # target test split, or None (no --checkpoint or no data)

    def miou(self, model: nn.Module) -> float | None:
        return miou_of(model, self.dataset) if self.dataset is not None else None


def runtime_cases(s: BenchmarkSettings, base: Base, workdir: Path, info: dict) -> list[Case]:
    """Eager PyTorch, ONNX Runtime fp32 and ONNX Runtime INT8 of the base model."""
    model, ckpt, name = base.model, base.ckpt, base.name
    num_classes = int(ckpt["model_config"]["num_classes"])
    size = s.resolutions[0]
    eager = Case(f"{name} eager", "torch", "fp32", torch_runner(model), macs_of(model),
                 n_params(model), base.miou(model), key="eager")
    onnx_fp32 = export_onnx(model, workdir / "model_fp32.onnx", mode="pred", size=size,
                            metadata=metadata_from_checkpoint(ckpt, "pred", size))
    ort_fp32 = OnnxRuntimeBackend(onnx_fp32, device="cpu", threads=s.threads)
    ort = Case(f"{name} ONNX Runtime", "onnxruntime", "fp32", ort_runner(ort_fp32), eager.macs,
               eager.params, base.miou(BackendModule(ort_fp32, num_classes)), key="ort")
    if s.calibration:
        files = pick_evenly(calibration_images(s.calibration), s.calibration_frames)
        frames = preprocess_frames(files, size, ckpt["mean"], ckpt["std"])
        note = f"calibrated on {len(frames)} frames of {s.calibration}"
    else:
        rng = np.random.default_rng(0)
        frames = [rng.standard_normal((1, 3, *size), dtype=np.float32)
                  for _ in range(max(1, min(s.calibration_frames, 4)))]
        note = "calibrated on random inputs (no --data/--calibration): accuracy not meaningful"
    started = time.perf_counter()
    onnx_int8 = quantize_int8(onnx_fp32, workdir / "model_int8.onnx", frames)
    info["int8_quantise_seconds"] = time.perf_counter() - started
    ort_int8 = OnnxRuntimeBackend(onnx_int8, device="cpu", threads=s.threads)
    int8 = Case(f"{name} ONNX Runtime INT8", "onnxruntime", "int8", ort_runner(ort_int8),
                eager.macs, eager.params, base.miou(BackendModule(ort_int8, num_classes)),
                note=note, key="int8")
    return [eager, ort, int8]


def pruned_cases(s: BenchmarkSettings, base: Base) -> list[Case]:
    """Structured channel pruning: the given checkpoints, else the base pruned here."""
    cases = []
    for i, path in enumerate(s.pruned):
        pruned, pckpt = load_model(path)
        pruned.eval()
        p = pckpt.get("pruning", {})
        ft = p.get("finetune", {}).get("iters", 0)
        label = (f"{base.name} pruned {100 * p.get('ratio', 0):.0f}%"
                 + (f" +{ft} it ft" if ft else ""))
        cases.append(Case(label, "torch", "fp32", torch_runner(pruned), macs_of(pruned),
                          n_params(pruned), base.miou(pruned),
                          note=f"{Path(path).name}: {p.get('scope', '?')} scope", key=f"pruned{i}"))
    if s.pruned:
        return cases
    for i, ratio in enumerate(s.ratios):
        pruned = copy.deepcopy(base.model)
        prune_channels(pruned, ratio)
        pruned.eval()
        cases.append(Case(f"{base.name} pruned {100 * ratio:.0f}%", "torch", "fp32",
                          torch_runner(pruned), macs_of(pruned), n_params(pruned),
                          base.miou(pruned), note="structured, global L2, no fine-tune",
                          key=f"pruned{i}"))
    return cases


def contrast_cases(s: BenchmarkSettings, base: Base, eager: Case) -> list[Case]:
    """Unstructured 50 % (same dense work) and torchvision's alternatives (speed only)."""
    sparse = copy.deepcopy(base.model)
    prune_permanently(sparse, 0.5)
    sparse.eval()
    cases = [Case(f"{base.name} unstructured 50%", "torch", "fp32", torch_runner(sparse),
                  eager.macs, n_params(sparse), base.miou(sparse),
                  note="global L1 zeros; dense MACs unchanged, no fine-tune", key="unstructured")]
    yardstick = yardstick_case(base)
    if yardstick is not None:
        cases.append(yardstick)
    if s.alternatives:
        num_classes = int(base.ckpt["model_config"]["num_classes"])
        for alt in ALTERNATIVES:
            net = getattr(tvseg, alt)(weights=None, weights_backbone=None,
                                      num_classes=num_classes).eval()
            cases.append(Case(ALTERNATIVE_NAMES[alt], "torch", "fp32", torch_runner(net),
                              macs_of(net), n_params(net), None,
                              note="torchvision, random weights (speed only)", key=alt))
    return cases


YARDSTICK = "resnet18"  # the paper's real-time network: other networks' speed is told against it


def yardstick_case(base: Base) -> Case | None:
    """BiSeNet-R18 eager fp32 (random weights: speed only) when the base network is another
    one, so that its rows can be told as a fraction of the paper's network in one run."""
    if base.ckpt["model_config"]["backbone"] == YARDSTICK:
        return None
    cfg = Config()
    cfg.model.backbone = YARDSTICK
    cfg.model.num_classes = int(base.ckpt["model_config"]["num_classes"])
    torch.manual_seed(0)
    r18 = build_segmentation_model(cfg.model).eval()
    return Case("BiSeNet-R18 eager (the paper's network)", "torch", "fp32", torch_runner(r18),
                macs_of(r18), n_params(r18), None,
                note="random weights (speed only): the yardstick", key="yardstick")


def yardstick_line(rows: list[dict]) -> str | None:
    """'p50 / BiSeNet-R18 eager p50' of the base network's rows, when the run has both."""
    by_key = {r["key"]: r for r in rows}
    if "yardstick" not in by_key:
        return None
    r18 = by_key["yardstick"]["latency_ms_p50"]
    parts = [f"{by_key[k]['name']} {by_key[k]['latency_ms_p50'] / r18:.3f}x"
             for k in ("eager", "ort", "int8") if k in by_key]
    return f"p50 over BiSeNet-R18 eager fp32 ({r18:.1f} ms) in this run: " + ", ".join(parts) + "."


def build_cases(s: BenchmarkSettings, workdir: Path, dataset) -> tuple[list[Case], dict]:
    """Every row but the GEMM reference, and what the report says about how they were made."""
    info: dict = {}
    model, ckpt, ckpt_path = load_base(s.checkpoint, s.backbone)
    base = Base(model, ckpt, f"BiSeNet-{short(ckpt['model_config']['backbone'])}", dataset)
    cases = runtime_cases(s, base, workdir, info)
    cases += pruned_cases(s, base)
    cases += contrast_cases(s, base, cases[0])
    info["base_checkpoint"] = str(ckpt_path) if s.checkpoint else "random weights (no --checkpoint)"
    return cases, info


# --- report ------------------------------------------------------------------------------

def summarise(case: Case, samples: list[tuple[float, float]], size: tuple[int, int],
              gemm_gflops: float | None) -> dict:
    wall = [s[0] for s in samples]
    cpu = [s[1] for s in samples]
    p50 = percentile(wall, 50)
    macs = case.macs(size)
    row = {
        "name": case.name, "key": case.key, "runtime": case.runtime, "precision": case.precision,
        "latency_ms_p50": 1e3 * p50, "latency_ms_p90": 1e3 * percentile(wall, 90),
        "cpu_ms_p50": 1e3 * percentile(cpu, 50), "throughput_fps": 1.0 / p50 if p50 > 0 else None,
        "macs": macs, "params": case.params, "miou": case.miou, "note": case.note,
        "samples_ms": [round(1e3 * w, 3) for w in wall],
    }
    if macs:
        row["gflops"] = 2 * macs / p50 / 1e9
        if gemm_gflops and case.precision == "fp32":
            row["fraction_of_gemm_peak"] = row["gflops"] / gemm_gflops
    return row


def _fmt(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


RESULT_HEADERS = ("model", "runtime", "precision", "params (M)", "GMACs", "p50 ms", "p90 ms",
                  "CPU ms", "fps", "vs eager", "GFLOP/s", "of GEMM peak", "mIoU (%)", "note")


def results_table(rows: list[dict], eager_ms: float | None) -> str:
    """One resolution's rows as a markdown table ('vs eager': p50 over the eager row's)."""
    cells = []
    for r in rows:
        ratio = r["latency_ms_p50"] / eager_ms if eager_ms and r["key"] != "gemm" else None
        cells.append([
            r["name"], r["runtime"], r["precision"], _fmt(r["params"], ".2f", 1e-6),
            _fmt(r["macs"], ".2f", 1e-9), f"{r['latency_ms_p50']:.1f}",
            f"{r['latency_ms_p90']:.1f}", f"{r['cpu_ms_p50']:.1f}",
            _fmt(r["throughput_fps"], ".2f"), f"{_fmt(ratio, '.2f')}x",
            _fmt(r.get("gflops"), ".1f"), _fmt(r.get("fraction_of_gemm_peak"), ".2f"),
            _fmt(r["miou"], ".2f", 100), r["note"]])
    return markdown_table(RESULT_HEADERS, cells, align="lll" + "r" * 10 + "l")


def write_report(doc: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "benchmark.json", out / "benchmark.md"
    atomic_write_json(json_path, doc)
    m = doc["machine"]
    lines = [
        "# Inference benchmark",
        "",
        f"`{doc['command']}`",
        "",
        (f"{m['cpu']}, {m['cores']} cores usable, **{doc['threads']} threads** "
         f"(torch.set_num_threads and ONNX Runtime intra_op_num_threads), torch "
         f"{doc['versions']['torch']}, onnxruntime {doc['versions']['onnxruntime']}, batch 1, up "
         f"to {doc['repeats']} interleaved repeats in random order after {doc['warmup']} warm-up "
         f"(slow cases fewer, at least 3); load average at start {m['loadavg_start']}, at end "
         f"{m['loadavg_end']}."),
        (f"Base model: {doc['info']['base_checkpoint']}. mIoU: 11 named classes on "
         f"{doc['miou_data'] or '- (no --checkpoint or no data)'}."),
        ("GEMM peak scan (fp32 torch.mm, best of 3): "
         + ", ".join(f"N={s['n']}: {s['gflops']:.1f} GFLOP/s" for s in doc["gemm"]["scan"])
         + "; each table's first row repeats the best size interleaved with the models, and "
         "'of GEMM peak' divides by that row."),
        "",
    ]
    for res, rows in doc["results"].items():
        eager = next((r for r in rows if r["key"] == "eager"), None)
        lines += [f"## {res}", "",
                  results_table(rows, eager["latency_ms_p50"] if eager else None), ""]
        if (line := yardstick_line(rows)) is not None:
            lines += [line, ""]
    atomic_write_text(md_path, "\n".join(lines))
    return json_path, md_path


# --- the whole run ------------------------------------------------------------------


@dataclass
class BenchmarkSettings:
    """One `uda-seg benchmark` (the flags, as plain data)."""

    resolutions: list[tuple[int, int]] = field(default_factory=lambda: [(360, 480)])
    checkpoint: str | None = None  # trained checkpoint; None: random weights
    backbone: str = "resnet18"  # of the random model without a checkpoint
    pruned: list[str] = field(default_factory=list)  # structured-pruned checkpoints
    ratios: list[float] = field(default_factory=lambda: list(DEFAULT_RATIOS))  # else prune here
    data: str | None = None  # make-synthetic output or CamVid folder (mIoU, calibration)
    eval_limit: int = 0
    eval_size: tuple[int, int] | None = None
    calibration_frames: int = 16
    repeats: int = 7
    warmup: int = 1
    threads: int = 0  # 0: every usable core
    case_budget: float = 20.0
    gap_ms: float = 50.0
    alternatives: bool = True  # torchvision's models for comparison
    gemm_sizes: list[int] = field(default_factory=lambda: list(GEMM_SIZES))
    out: str = "runs/benchmark"
    command: str = "uda-seg benchmark"  # recorded in the report
    calibration: str | None = None  # set from `data` by run_benchmark


def miou_dataset(s: BenchmarkSettings, data_root: Path | None):
    """The target test split to measure mIoU on (needs a checkpoint and data), and its label;
    a folder without a test split (CamVid-SegNet as distributed here) is measured on val,
    and the label says so."""
    if data_root is None or not s.checkpoint:
        return None, None
    ckpt = load_checkpoint(s.checkpoint)
    split = "test" if has_split(detect_format(data_root), data_root, "test") else "val"
    dataset = checkpoint_eval_split(ckpt, data_root, split, limit=s.eval_limit,
                                    eval_size=list(s.eval_size or []))
    size = s.eval_size
    fallback = " (no test split in the folder)" if split != "test" else ""
    return dataset, f"{data_root} {split} split{fallback} ({len(dataset)} images" + (
        f", resized to {size[0]}x{size[1]})" if size else ", native size)")


def time_cases(s: BenchmarkSettings, cases: list[Case], gemm: dict,
               progress: bool) -> dict[str, list[dict]]:
    """Every case at every resolution, interleaved with the GEMM reference row."""
    n = gemm["best_n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm_case = Case(f"GEMM fp32 {n}x{n} (peak reference)", "torch", "fp32",
                     lambda size: (lambda: torch.mm(a, b)), lambda size: n**3, key="gemm")
    results: dict[str, list[dict]] = {}
    for size in s.resolutions:
        label = f"{size[0]}x{size[1]}"
        log.info("timing %d cases at %s (%d repeats)", len(cases) + 1, label, s.repeats)
        runners = {c.name: c.make_runner(size) for c in [gemm_case, *cases]}
        samples = interleaved(runners, s.repeats, s.warmup, progress, gap_s=s.gap_ms / 1e3,
                              budget_s=s.case_budget)
        gemm_row = summarise(gemm_case, samples[gemm_case.name], size, None)
        rows = [gemm_row] + [summarise(c, samples[c.name], size, gemm_row["gflops"])
                             for c in cases]
        gemm_row["fraction_of_gemm_peak"] = 1.0
        results[label] = rows
    return results


def run_benchmark(s: BenchmarkSettings, progress: bool = False) -> tuple[dict, Path, Path]:
    """Build, time and report every case; returns the document and the JSON and markdown
    files written to `s.out`."""
    s.threads = s.threads or available_cores()
    torch.set_num_threads(s.threads)
    load_start = load_average()
    data_root = target_root(s.data)
    s.calibration = str(data_root) if data_root else None
    dataset, miou_data = miou_dataset(s, data_root)
    gemm = measure_gemm_peak(s.gemm_sizes)
    with tempfile.TemporaryDirectory(prefix="uda_seg_bench_") as tmp:
        cases, info = build_cases(s, Path(tmp), dataset)
        results = time_cases(s, cases, gemm, progress)
    machine = machine_description(loadavg_start=load_start)
    doc = {
        "command": s.command,
        "machine": machine,
        "threads": s.threads,
        "versions": {k: machine[k] for k in ("torch", "onnxruntime", "python")},
        "repeats": s.repeats, "warmup": s.warmup, "gemm": gemm, "info": info,
        "miou_data": miou_data, "results": results,
    }
    json_path, md_path = write_report(doc, Path(s.out))
    return doc, json_path, md_path
