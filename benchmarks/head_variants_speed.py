"""What do the parts around the context path cost at serving time? BiSeNet variants of one
profile, each exported to ONNX and static INT8 at one input size, timed interleaved in one
run through ONNX Runtime, with BiSeNet-R18 eager fp32 (the paper's network) as the yardstick.

    .venv/bin/python benchmarks/head_variants_speed.py --threads 2 \\
        --variant "no spatial path=" \\
        --variant "spatial path 32-64-64=model.spatial_channels=[32,64,64]" \\
        --variant "spatial path 64-128-256=model.spatial_channels=[64,128,256]" \\
        --variant "1/4 detail 32=model.detail_channels=32"

Each --variant is NAME=OVERRIDES (space-separated KEY=VALUE on top of --profile). Random
weights (speed only: the accuracy of the same variants comes from training them); the INT8
graphs are calibrated on --calibration-frames random inputs, which sets their scales but
not their speed. Every round runs every case once in a random order (slow cases fewer
repeats); p50 of wall-clock time, batch 1. Writes OUT/head_variants.json and prints a
markdown table with each case's p50 over the yardstick's.
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from uda_seg_core.config import Config, load_config, parse_size
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.inference.timing import interleaved, percentile
from uda_seg_core.models import ClassIds, build_segmentation_model, count_macs
from uda_seg_core.optimize.export import export_onnx, quantize_int8
from uda_seg_core.reporting import (
    atomic_write_json,
    available_cores,
    machine_description,
    markdown_table,
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=OVERRIDES (OVERRIDES may be empty)")
    return name, overrides.split()


def onnx_runner(path: Path, x: np.ndarray, threads: int):
    backend = OnnxRuntimeBackend(path, device="cpu", threads=threads)
    return lambda: backend.infer(x)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="config/real_pretrained.yaml")
    parser.add_argument("--variant", action="append", required=True, help="NAME=OVERRIDES")
    parser.add_argument("--size", default="360x480", help="HxW")
    parser.add_argument("--threads", type=int, default=0, help="0: every usable core")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--calibration-frames", type=int, default=4)
    parser.add_argument("--fp32", action="store_true", help="time the fp32 graphs too")
    parser.add_argument("--out", type=Path, default=Path("runs/head_variants"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    # the graphs carry no uda_seg metadata (random weights): the backend's warning says so
    logging.getLogger("uda_seg_core.inference.onnx_backend").setLevel(logging.ERROR)
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    size = parse_size(args.size)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, *size), dtype=np.float32)
    frames = [rng.standard_normal((1, 3, *size), dtype=np.float32)
              for _ in range(args.calibration_frames)]
    runners, macs = {}, {}
    with tempfile.TemporaryDirectory(prefix="uda_seg_variants_") as tmp:
        for i, (name, overrides) in enumerate(map(parse_variant, args.variant)):
            cfg = load_config(args.profile, [*overrides, "model.pretrained="])
            torch.manual_seed(0)
            model = build_segmentation_model(cfg.model).eval()
            macs[name] = count_macs(model, (1, 3, *size))
            fp32 = export_onnx(model, Path(tmp) / f"v{i}.onnx", mode="pred", size=size)
            int8 = quantize_int8(fp32, Path(tmp) / f"v{i}_int8.onnx", frames)
            runners[f"{name} INT8"] = onnx_runner(int8, x, threads)
            if args.fp32:
                runners[f"{name} fp32"] = onnx_runner(fp32, x, threads)
        yard_cfg = copy.deepcopy(Config())
        yard_cfg.model.backbone = "resnet18"
        torch.manual_seed(0)
        r18 = ClassIds(build_segmentation_model(yard_cfg.model).eval()).eval()
        xt = torch.from_numpy(x)

        def yardstick():
            with torch.inference_mode():
                return r18(xt)

        runners["BiSeNet-R18 eager fp32 (yardstick)"] = yardstick
        samples = interleaved(runners, args.repeats, 2, True, gap_s=0.05, budget_s=60.0)
    p50 = {name: 1e3 * percentile([s[0] for s in v], 50) for name, v in samples.items()}
    r18_ms = p50["BiSeNet-R18 eager fp32 (yardstick)"]
    rows = [[name, f"{ms:.1f}", f"{ms / r18_ms:.3f}x",
             f"{macs[name.rsplit(' ', 1)[0]] / 1e9:.2f}" if name.rsplit(" ", 1)[0] in macs
             else "-"] for name, ms in p50.items()]
    print(markdown_table(["case", "p50 ms", "vs R18 eager", "GMACs"], rows))
    command = " ".join(f"'{a}'" if " " in a else a for a in argv)
    doc = {"command": f"python benchmarks/head_variants_speed.py {command}",
           "size": list(size), "threads": threads,
           "machine": machine_description(), "p50_ms": p50, "macs": macs,
           "samples_ms": {k: [round(1e3 * s[0], 3) for s in v] for k, v in samples.items()}}
    atomic_write_json(args.out / "head_variants.json", doc)
    print(f"wrote {args.out / 'head_variants.json'}")


if __name__ == "__main__":
    main()
