"""Inference speed of every backend and of the alternatives: what `make benchmark` runs.

    .venv/bin/python benchmarks/inference_speed.py
    .venv/bin/python benchmarks/inference_speed.py --checkpoint runs/x/best.pt \
        --pruned runs/x/pruned30.pt,runs/x/pruned50.pt --repeats 10

A thin wrapper around `uda-seg benchmark` (src/uda_seg_core/benchmark.py) with defaults
for a full run that stays within a few minutes on two cores: 360x480 and 720x960, five
interleaved repeats, the embedded synthetic data for INT8 calibration (and for mIoU
when a --checkpoint is given) if `data/synthetic` exists. Any flag given here replaces
the default of the same name. Results: runs/benchmark/benchmark.{json,md}.
"""
from __future__ import annotations

import sys
from pathlib import Path

from uda_seg_core.cli import main

DEFAULTS = {"--resolutions": "360x480,720x960", "--repeats": "5", "--out": "runs/benchmark"}
SYNTHETIC = Path("data/synthetic")


def default_args(given: list[str]) -> list[str]:
    defaults = dict(DEFAULTS)
    if SYNTHETIC.is_dir():
        defaults["--data"] = str(SYNTHETIC)
    named = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")}
    return [item for flag, value in defaults.items() if flag not in named for item in (flag, value)]


if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(["benchmark", *default_args(argv), *argv]))
