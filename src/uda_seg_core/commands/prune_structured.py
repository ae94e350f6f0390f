"""`uda-seg prune-structured`: channel pruning (+ fine-tune) for real speed-ups.

    uda-seg prune-structured --checkpoint runs/x/best.pt --ratio 0.5 --out runs/x/pruned50.pt
    uda-seg prune-structured --checkpoint runs/x/best.pt --ratio 0.5 --finetune-iters 300 \\
        --evaluate --out runs/x/pruned50_ft.pt data.target_root=data/synthetic/camvid

See `uda_seg_core.optimize.structured` for the scopes, the BatchNorm re-estimation, the
iterative steps and the fine-tune.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uda_seg_core.commands.common import USER_ERRORS, fail
from uda_seg_core.optimize.structured import (
    IMPORTANCES,
    SCOPES,
    StructuredPruningError,
    parse_group_ratios,
    prune_checkpoint,
)
from uda_seg_core.train.finetune import FINETUNE_METHODS, FinetuneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained uda_seg checkpoint (.pt)")
    parser.add_argument("--ratio", type=float, default=None,
                        help="fraction of channels to remove (global: of all; layer: of each); "
                        "default: optimise.structured_ratio (0.5)")
    parser.add_argument("--scope", default="global", choices=SCOPES, help="how channels are ranked")
    parser.add_argument("--group-ratios", default=None,
                        help="with --scope group: name=ratio,... over spatial_path, context_path, "
                        "arm, ffm, heads")
    parser.add_argument("--importance", default="l2", choices=IMPORTANCES,
                        help="channel ranking criterion")
    parser.add_argument("--round-to", type=int, default=8,
                        help="keep channel counts multiples of this (0 = off)")
    parser.add_argument("--max-layer-ratio", type=float, default=0.9,
                        help="global scope: no layer loses more than this fraction")
    parser.add_argument("--finetune-iters", type=int, default=None,
                        help="fine-tune iterations after pruning (default: "
                             "optimise.finetune_iters, 0)")
    parser.add_argument("--finetune-method", default="auto", choices=("auto", *FINETUNE_METHODS),
                        help="auto: adversarial when the checkpoint holds a discriminator, "
                        "else supervised")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="initial learning rate of the fine-tune (default: train.lr / 10)")
    parser.add_argument("--bn-batches", type=int, default=25,
                        help="batches to re-estimate BatchNorm statistics on after pruning "
                        "(0 = off); source, plus target with the adversarial fine-tune method")
    parser.add_argument("--steps", type=int, default=1,
                        help="prune in this many steps, each followed by its share of the "
                        "fine-tune")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="weight of distillation from the unpruned network during the "
                        "supervised fine-tune")
    parser.add_argument("--evaluate", action="store_true",
                        help="report target-test mIoU before and after (pruned, fine-tuned)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", required=True, help="pruned checkpoint to write (.pt)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides for the fine-tune/evaluation, e.g. "
                        "data.target_root=...")


def _miou(part: dict | None) -> str:
    value = (part or {}).get("target_test", {}).get("miou")
    return "-" if value is None else f"{100 * value:.2f}"


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = prune_checkpoint(
            args.checkpoint, args.out, ratio=args.ratio, scope=args.scope,
            group_ratios=parse_group_ratios(args.group_ratios), importance=args.importance,
            round_to=args.round_to, max_layer_ratio=args.max_layer_ratio,
            finetune_iters=args.finetune_iters, finetune_method=args.finetune_method,
            finetune_lr=args.finetune_lr, distill=args.distill, steps=args.steps,
            bn_batches=args.bn_batches, evaluate=args.evaluate, device=args.device,
            overrides=args.overrides)
    except (*USER_ERRORS, StructuredPruningError, FinetuneError) as exc:
        return fail("prune-structured", exc)
    b, a = summary["before"], summary["after_pruning"]
    print(f"wrote {args.out} (summary: {Path(args.out).with_suffix('.json')})")
    print(f"parameters {b['params'] / 1e6:.2f} M -> {a['params'] / 1e6:.2f} M "
          f"({a['params'] / b['params']:.2f}x); MACs at {b['input_size'][0]}x{b['input_size'][1]} "
          f"{b['macs'] / 1e9:.2f} G -> {a['macs'] / 1e9:.2f} G ({a['macs'] / b['macs']:.2f}x)")
    if args.evaluate:
        print(f"target-test mIoU (%): before {_miou(b)}, pruned {_miou(a)}, "
              f"fine-tuned {_miou(summary.get('after_finetune'))}")
    return 0
