"""`uda-seg evaluate`: pixel accuracy, per-class IoU and mIoU of a checkpoint on a split.

    uda-seg evaluate --checkpoint runs/IDDA2CamVid_bisenet-r18_fcd/best.pt \\
        --data data/synthetic/camvid --split test --save-predictions 4

Prints the per-class IoU table (markdown) with the headline mIoU over the 11 named
classes, the 12-class mIoU and pixel accuracy; writes `metrics.json` and, with
`--save-predictions N`, `predictions.png`: N rows of image | ground truth | prediction,
like the paper's Fig. 5. Output goes to `--out` (default: beside the checkpoint, in
`eval_<split>/`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from uda_seg_core.commands.common import USER_ERRORS, add_checkpoint_dataset_arguments, fail
from uda_seg_core.evaluate import evaluate_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_dataset_arguments(parser)
    parser.add_argument("--save-predictions", type=int, default=0, metavar="N",
                        help="draw N rows of image | ground truth | prediction to predictions.png")
    parser.add_argument("--out", help="output folder (default: <checkpoint dir>/eval_<split>)")


def run(args: argparse.Namespace) -> int:
    try:
        result = evaluate_checkpoint(
            args.checkpoint, args.data, fmt=args.format, split=args.split,
            sequences=args.sequences, eval_size=args.eval_size, limit=args.limit,
            device=args.device, out=args.out, save_predictions=args.save_predictions)
    except (*USER_ERRORS, ValueError) as exc:
        return fail("evaluate", exc)
    print(f"{args.checkpoint} on {args.data} ({result['format']}, {args.split}, "
          f"{result['images']} images)\n")
    print(result["table"])
    print(f"\nmetrics: {Path(result['out']) / 'metrics.json'}")
    if "figure" in result:
        print(f"figure: {result['figure']}")
    return 0
