"""`uda-seg reproduce`: every experiment of the paper's Tables I-IV, the pruning sweeps, the report.

    uda-seg reproduce --out runs/reproduce           # the reduced profile (make reproduce)
    uda-seg reproduce --out runs/paper --profile paper \\
        --source-root data/IDDA --target-root data/CamVid --device cuda
    uda-seg reproduce --out runs/reproduce --only table1_fcd table2_dropout --dry-run

See `uda_seg_core.study.reproduce` for the profiles, how rows share runs and how a rerun
skips what is done and resumes what was stopped.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from uda_seg_core.commands.common import fail
from uda_seg_core.config import ConfigError
from uda_seg_core.study.reproduce import PROFILES, ReproduceSettings, reproduce


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/reproduce",
                        help="output folder (default: runs/reproduce)")
    parser.add_argument("--profile", default="reduced", choices=PROFILES,
                        help="reduced: synthetic default on a CPU in under an hour (default); "
                        "paper: the paper's settings (real data, GPU)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these experiments (names of config/experiments/*.yaml)")
    parser.add_argument("--source-root",
                        help="labelled source dataset (IDDA) for the adaptation rows")
    parser.add_argument("--target-root", help="target dataset (CamVid) for every row")
    parser.add_argument("--device", help="train.device for every run (auto | cpu | cuda | cuda:N)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides for every run, e.g. train.max_iters=4")
    parser.add_argument("--experiments", type=Path,
                        help="folder of experiment YAMLs (default: config/experiments)")
    parser.add_argument("--skip-sweep", action="store_true", help="no post-training pruning sweep")
    parser.add_argument("--skip-report", action="store_true", help="no report.md at the end")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the commands, run nothing")


def run(args: argparse.Namespace) -> int:
    settings = ReproduceSettings(**vars(args))
    try:
        _, failures = reproduce(settings, say=lambda line: print(line, flush=True))
    except (ConfigError, subprocess.CalledProcessError) as exc:
        return fail("reproduce", exc)
    if failures:
        print(f"uda-seg reproduce: {len(failures)} run(s) failed: {', '.join(failures)}; rerun "
              f"the same command to retry them (finished runs are skipped)", file=sys.stderr)
        return 1
    return 0
