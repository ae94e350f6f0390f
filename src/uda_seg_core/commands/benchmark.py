"""`uda-seg benchmark`: latency of every backend and of the alternatives, in one run.

    uda-seg benchmark                                      # random BiSeNet-R18, 360x480
    uda-seg benchmark --checkpoint runs/x/best.pt --pruned runs/x/p30.pt,runs/x/p50.pt \\
        --data data/synthetic --resolutions 360x480,720x960 --out runs/benchmark

See `uda_seg_core.benchmark` for the rows, the columns and how cases are interleaved.
Writes OUT/benchmark.json and OUT/benchmark.md and prints the markdown.
"""
from __future__ import annotations

import argparse
import logging
import sys

from uda_seg_core.benchmark import (
    DEFAULT_RATIOS,
    GEMM_SIZES,
    BenchmarkSettings,
    parse_resolutions,
    run_benchmark,
)
from uda_seg_core.commands.common import size_type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolutions", default="360x480",
                        help="HxW[,HxW...] (e.g. 360x480,720x960)")
    parser.add_argument("--checkpoint", default=None,
                        help="trained checkpoint (default: random weights)")
    parser.add_argument("--backbone", default="resnet18",
                        help="backbone of the random model without --checkpoint")
    parser.add_argument("--pruned", default=None,
                        help="comma-separated structured-pruned checkpoints (uda-seg "
                        "prune-structured); default: prune --ratios here, without fine-tune")
    parser.add_argument("--ratios", default=",".join(map(str, DEFAULT_RATIOS)),
                        help="channel-pruning ratios when --pruned is not given")
    parser.add_argument("--data", default=None,
                        help="make-synthetic output or CamVid folder: target test split (else val) "
                        "for mIoU, "
                        "target train split for INT8 calibration")
    parser.add_argument("--eval-limit", type=int, default=0,
                        help="use only the first N test images (0 = all)")
    parser.add_argument("--eval-size", type=size_type, default=None,
                        help="HxW to resize test images to (default: native)")
    parser.add_argument("--calibration-frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of every case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of every case first")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0 = every usable core)")
    parser.add_argument("--case-budget", type=float, default=20.0,
                        help="seconds of timed runs per case and resolution; slower cases get "
                        "fewer repeats, at least 3 (0 = always --repeats)")
    parser.add_argument("--gap-ms", type=float, default=50.0,
                        help="pause between cases so the previous case's worker threads stop "
                        "spinning")
    parser.add_argument("--no-alternatives", action="store_true",
                        help="skip the torchvision models")
    parser.add_argument("--gemm-sizes", default=",".join(map(str, GEMM_SIZES)),
                        help="square torch.mm sizes scanned for the fp32 peak")
    parser.add_argument("--out", default="runs/benchmark",
                        help="folder for benchmark.json and benchmark.md")


def settings_of(args: argparse.Namespace) -> BenchmarkSettings:
    command = ("uda-seg benchmark " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["benchmark"]
               else " ".join(sys.argv))
    return BenchmarkSettings(
        resolutions=parse_resolutions(args.resolutions), checkpoint=args.checkpoint,
        backbone=args.backbone, pruned=[p for p in (args.pruned or "").split(",") if p.strip()],
        ratios=[float(r) for r in str(args.ratios).split(",") if r.strip()], data=args.data,
        eval_limit=args.eval_limit, eval_size=args.eval_size,
        calibration_frames=args.calibration_frames, repeats=args.repeats, warmup=args.warmup,
        threads=args.threads, case_budget=args.case_budget, gap_ms=args.gap_ms,
        alternatives=not args.no_alternatives,
        gemm_sizes=[int(v) for v in str(args.gemm_sizes).split(",") if v.strip()],
        out=args.out, command=command)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _, json_path, md_path = run_benchmark(settings_of(args), progress=sys.stderr.isatty())
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0
