"""Does ONNX Runtime's thread spinning pay? One session alone, and two sessions taking turns,
with spinning on and off, interleaved in one run.

    .venv/bin/python benchmarks/ort_spinning.py                  # BiSeNet-R18 INT8, 360x480
    .venv/bin/python benchmarks/ort_spinning.py --precision fp32 --threads 2 --rounds 4

Four sessions of the same model (random-init BiSeNet-R18, or --checkpoint; INT8 is static
QDQ calibrated on random inputs: speed only), two with
`session.intra_op.allow_spinning` = 1 and two with 0, each `--threads` intra-op threads.
Cases, each a block of `--block` runs, blocks in a fresh random order every round with a
pause between blocks so that no pool is still spinning when the next block starts:
- alone, spin on / off: one session, run after run (a node with one camera);
- two alternating, spin on / off: session A, then session B, then A, ... (a second camera,
  another perception process, or a benchmark's reference session on the same cores);
  each run is timed.
Prints the p50 of each case and the ratios, with the load average before and after.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="model checkpoint (default: random-init BiSeNet-R18)")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument("--size", default="360x480", help="HxW")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads per session")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--block", type=int, default=8, help="runs (or A/B pairs) per block")
    p.add_argument("--gap", type=float, default=0.3, help="seconds of pause between blocks")
    return p.parse_args()


def build_model(args: argparse.Namespace, folder: Path) -> tuple[Path, tuple[int, int]]:
    import torch

    from uda_seg_core.config import Config, parse_size
    from uda_seg_core.models import build_segmentation_model, load_model
    from uda_seg_core.optimize.export import export_onnx, metadata_from_checkpoint, quantize_int8

    size = parse_size(args.size)
    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint)
        meta = metadata_from_checkpoint(ckpt, "pred", size)
    else:
        torch.manual_seed(0)
        model, meta = build_segmentation_model(Config().model), None
    fp32 = export_onnx(model.eval(), folder / "fp32.onnx", size=size, metadata=meta)
    if args.precision == "fp32":
        return fp32, size
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((1, 3, *size), dtype=np.float32) for _ in range(2)]
    return quantize_int8(fp32, folder / "int8.onnx", frames), size


def blocks(sessions: dict, x: np.ndarray, n: int) -> dict:
    """name -> a block: n timed runs (alone) or n timed A/B pairs (alternating)."""
    feed = {"image": x}

    def alone(s):
        def run() -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                s.run(None, feed)
                out.append(time.perf_counter() - t)
            return out
        return run

    def alternating(a, b):
        def run() -> list[float]:
            out = []
            for _ in range(n):
                for s in (a, b):
                    t = time.perf_counter()
                    s.run(None, feed)
                    out.append(time.perf_counter() - t)
            return out
        return run

    return {"alone, spin on": alone(sessions["on_a"]), "alone, spin off": alone(sessions["off_a"]),
            "two alternating, spin on": alternating(sessions["on_a"], sessions["on_b"]),
            "two alternating, spin off": alternating(sessions["off_a"], sessions["off_b"])}


def main() -> int:
    args = parse_args()
    import onnxruntime as ort

    from uda_seg_core.inference.onnx_backend import session_options
    from uda_seg_core.reporting import load_average, machine_description

    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="ort_spinning_") as tmp:
        path, size = build_model(args, Path(tmp))
        sessions = {f"{mode}_{k}": ort.InferenceSession(
            str(path), session_options(args.threads, spinning=mode == "on"),
            providers=["CPUExecutionProvider"]) for mode in ("on", "off") for k in "ab"}
    x = np.random.default_rng(1).standard_normal((1, 3, *size), dtype=np.float32)
    for s in sessions.values():  # warm-up: first runs allocate
        s.run(None, {"image": x})
    cases = blocks(sessions, x, args.block)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    rng = np.random.default_rng(0)
    cpu0 = time.process_time()
    for _ in range(args.rounds):
        for i in rng.permutation(len(cases)):
            name = list(cases)[i]
            time.sleep(args.gap)
            samples[name] += cases[name]()
    cpu = time.process_time() - cpu0
    p50 = {name: 1e3 * float(np.median(v)) for name, v in samples.items()}
    m = machine_description(loadavg_start=load_start)
    print(f"ONNX Runtime {m['onnxruntime']}, {args.precision} BiSeNet-R18 at {size[0]}x{size[1]}, "
          f"{args.threads} intra-op threads per session, {m['cpu']}, {m['cores']} cores; "
          f"{args.rounds} rounds x {args.block} per block; load average {m['loadavg_start']} -> "
          f"{m['loadavg_end']}; {cpu:.1f} s CPU timed")
    for name, value in p50.items():
        print(f"  {name:28s} p50 {value:7.1f} ms  ({len(samples[name])} runs)")
    print(f"alone: spin off / on = {p50['alone, spin off'] / p50['alone, spin on']:.2f}; "
          f"two alternating: spin on / off = "
          f"{p50['two alternating, spin on'] / p50['two alternating, spin off']:.2f}; "
          f"alternating / alone: spin on "
          f"{p50['two alternating, spin on'] / p50['alone, spin on']:.2f}, spin off "
          f"{p50['two alternating, spin off'] / p50['alone, spin off']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
