"""`uda-seg adapt-bn`: re-estimate a checkpoint's BatchNorm statistics on unlabelled target
frames alone; no training, no labels, seconds of forward passes.

    uda-seg adapt-bn --checkpoint runs/source_only/best.pt --data ../shared/data/CamVid-SegNet \\
        --sequences 0001TP 0016E5 --out runs/source_only/adapt_bn.pt
    uda-seg evaluate --checkpoint runs/source_only/adapt_bn.pt \\
        --data ../shared/data/CamVid-SegNet --split val

A network trained on simulator frames normalises real frames with simulator statistics;
fresh statistics from target frames (AdaBN) move it part of the way to the target without
touching a weight. It is the baseline any adversarial adaptation must beat. The frames
come from the target's training split(s) (the checkpoint's data.train_splits), through the
checkpoint's own training transform; `--sequences` keeps frames of some drives only (hold
one out to measure on a drive the statistics never saw).
"""
from __future__ import annotations

import argparse

from uda_seg_core.commands.common import USER_ERRORS, fail
from uda_seg_core.train.batchnorm import adapt_batchnorm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a .pt written by uda-seg train/adapt")
    parser.add_argument("--data", required=True,
                        help="target dataset folder (any layout, read off the folder)")
    parser.add_argument("--out", required=True, help="checkpoint to write")
    parser.add_argument("--batches", type=int, default=40,
                        help="target batches of the checkpoint's batch size (default 40)")
    parser.add_argument("--sequences", nargs="+", default=(), metavar="SEQ",
                        help="only frames of these sequences (default: every frame)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame order and crops")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def run(args: argparse.Namespace) -> int:
    try:
        result = adapt_batchnorm(args.checkpoint, args.data, args.out, batches=args.batches,
                                 sequences=args.sequences, device=args.device, seed=args.seed)
    except (*USER_ERRORS, ValueError) as exc:
        return fail("adapt-bn", exc)
    frames = " ".join([result["target_root"], *result["sequences"]])
    print(f"{result['layers']} BatchNorm layers re-estimated on {result['batches']} batches of "
          f"{frames}: {result['out']}")
    return 0
