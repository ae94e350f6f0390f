"""`uda-seg report`: the paper's Tables I-IV and Figures 3-5 in markdown, from a runs folder.

    uda-seg report runs/reproduce                    # writes runs/reproduce/report.md
    uda-seg report runs/reproduce --out REPORT.md --examples 4
"""
from __future__ import annotations

import argparse

from uda_seg_core.commands.common import fail
from uda_seg_core.study.report import write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="folder of runs (e.g. runs/reproduce)")
    parser.add_argument("--out", help="markdown file to write (default: RUNS_DIR/report.md)")
    parser.add_argument("--examples", type=int, default=3,
                        help="rows of the qualitative figure (default 3)")
    parser.add_argument("--device", default="auto",
                        help="for the qualitative figure: auto | cpu | cuda")
    parser.add_argument("--no-qualitative", action="store_true",
                        help="skip Fig. 5 (no checkpoints needed)")


def run(args: argparse.Namespace) -> int:
    try:
        path = write_report(args.runs_dir, args.out, args.examples, args.device,
                            not args.no_qualitative)
    except (FileNotFoundError, ValueError) as exc:
        return fail("report", exc)
    print(f"wrote {path}")
    return 0
