"""Inference speed of every backend and of the alternatives: what `make benchmark` runs.

    .venv/bin/python benchmarks/inference_speed.py
    .venv/bin/python benchmarks/inference_speed.py --checkpoint runs/x/best.pt \
        --pruned runs/x/pruned30.pt,runs/x/pruned50.pt --repeats 10

A thin wrapper around `uda-seg benchmark` (src/uda_seg_core/benchmark.py) with defaults
for a full run that stays within a few minutes on two cores: 360x480 and 720x960, five
interleaved repeats, the embedded synthetic data for INT8 calibration (and for mIoU
when a --checkpoint is given) if `data/synthetic` exists. Any flag given here replaces
the default of the same name. Results: runs/benchmark/benchmark.{json,md}.

Then it judges the figures against issue 8's targets (ratios within the run, per
resolution): structured pruning >= 1.5x faster than eager with <= 1 mIoU point lost; ONNX
Runtime fp32 <= 0.85x eager; INT8 <= 0.6x eager with <= 1 point lost; the unpruned
BiSeNet (best fp32 runtime) >= half the GEMM peak. The verdicts are printed and written to
runs/benchmark/targets.md; `uda-seg benchmark` itself reports figures only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from uda_seg_core.cli import main
from uda_seg_core.reporting import atomic_write_text, markdown_table

DEFAULTS = {"--resolutions": "360x480,720x960", "--repeats": "5", "--out": "runs/benchmark"}
SYNTHETIC = Path("data/synthetic")
# Issue 8's targets ("Checked by"), as numbers.
TARGET_PRUNED_SPEEDUP = 1.5
TARGET_ORT_RATIO = 0.85
TARGET_INT8_RATIO = 0.6
TARGET_MIOU_LOSS = 1.0  # points
TARGET_PEAK_FRACTION = 0.5


def default_args(given: list[str]) -> list[str]:
    defaults = dict(DEFAULTS)
    if SYNTHETIC.is_dir():
        defaults["--data"] = str(SYNTHETIC)
    named = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")}
    return [item for flag, value in defaults.items() if flag not in named for item in (flag, value)]


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def checks(results: dict[str, list[dict]]) -> list[dict]:
    """Issue 8's targets, evaluated on benchmark.json's rows (ratios within one run)."""
    out = []

    def row(rows, key):
        return next((r for r in rows if r["key"] == key), None)

    for res, rows in results.items():
        eager = row(rows, "eager")
        if eager is None:
            continue
        e_ms, e_miou = eager["latency_ms_p50"], eager["miou"]

        def loss(r, e_miou=e_miou):
            return None if r["miou"] is None or e_miou is None else 100 * (e_miou - r["miou"])

        for key in [r["key"] for r in rows if r["key"].startswith("pruned")]:
            r = row(rows, key)
            speedup = e_ms / r["latency_ms_p50"]
            lost = loss(r)
            ok = speedup >= TARGET_PRUNED_SPEEDUP and (lost is None or lost <= TARGET_MIOU_LOSS)
            out.append({"resolution": res, "check": f"structured pruning ({r['name']}) speed-up >= "
                        f"{TARGET_PRUNED_SPEEDUP}x, mIoU loss <= {TARGET_MIOU_LOSS} pt",
                        "value": f"{speedup:.2f}x, loss {_fmt(lost, '.2f')} pt", "pass": ok})
        for key, target, label in (("ort", TARGET_ORT_RATIO, "ONNX Runtime fp32"),
                                   ("int8", TARGET_INT8_RATIO, "ONNX Runtime INT8")):
            r = row(rows, key)
            if r is None:
                continue
            ratio = r["latency_ms_p50"] / e_ms
            lost = loss(r)
            ok = ratio <= target
            text = f"{ratio:.2f}x eager"
            name = f"{label} latency <= {target}x eager"
            if key == "int8":
                name += f", mIoU loss <= {TARGET_MIOU_LOSS} pt"
                text += f", loss {_fmt(lost, '.2f')} pt"
                ok = ok and (lost is None or lost <= TARGET_MIOU_LOSS)
            out.append({"resolution": res, "check": name, "value": text, "pass": ok})
        fractions = {r["name"]: r.get("fraction_of_gemm_peak") for r in rows
                     if r["key"] in ("eager", "ort") and r.get("fraction_of_gemm_peak") is not None}
        if fractions:
            best = max(fractions, key=fractions.get)
            out.append({"resolution": res,
                        "check": f"unpruned BiSeNet >= {TARGET_PEAK_FRACTION} of the "
                        f"GEMM peak (best fp32 runtime)", "value": ", ".join(
                            f"{k} {v:.2f}" for k, v in fractions.items()),
                        "pass": fractions[best] >= TARGET_PEAK_FRACTION})
    return out


def targets_markdown(results: list[dict]) -> str:
    return "## Issue 8's targets\n\n" + markdown_table(
        ["resolution", "check", "measured", "result"],
        [[c["resolution"], c["check"], c["value"], "pass" if c["pass"] else "FAIL"]
         for c in results], align="llll") + "\n"


def out_folder(argv: list[str]) -> Path:
    """The --out the run wrote to (the last one given, as argparse reads it)."""
    out = None
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
    return Path(out or DEFAULTS["--out"])


def run(argv: list[str]) -> int:
    args = [*default_args(argv), *argv]
    code = main(["benchmark", *args])
    if code != 0:
        return code
    out = out_folder(args)
    doc = json.loads((out / "benchmark.json").read_text())
    text = targets_markdown(checks(doc["results"]))
    atomic_write_text(out / "targets.md", text)
    print(text + f"\nwrote {out / 'targets.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
