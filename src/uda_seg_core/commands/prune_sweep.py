"""`uda-seg prune-sweep`: post-training unstructured pruning of BiSeNet, with the paper's plots.

    uda-seg prune-sweep --checkpoint runs/IDDA2CamVid_bisenet-r18_fcd_prune-incremental/best.pt \\
        --data data/synthetic/camvid --split test --mode both --sparsities 0:0.85:0.05

See `uda_seg_core.optimize.sweep` for what is pruned and what is written.
"""
from __future__ import annotations

import argparse
import json

from uda_seg_core.commands.common import USER_ERRORS, add_checkpoint_dataset_arguments, fail
from uda_seg_core.optimize.sweep import (
    DEFAULT_TOLERANCE,
    MODES,
    parse_sparsities,
    sweep_checkpoint,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_dataset_arguments(parser)
    parser.add_argument("--mode", default="both", choices=(*MODES, "both"),
                        help="module: each group alone (Fig. 3); global: whole network (Fig. 4); "
                        "both (default)")
    parser.add_argument("--sparsities", default="0:0.85:0.05",
                        help="start:stop:step (stop included) or a comma list (default: "
                        "0:0.85:0.05)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="mIoU loss (fraction) still counted as holding up (default: 0.01)")
    parser.add_argument("--out",
                        help="output folder (default: <checkpoint dir>/prune_sweep_<split>)")


def run(args: argparse.Namespace) -> int:
    modes = MODES if args.mode == "both" else (args.mode,)
    try:
        sparsities = parse_sparsities(args.sparsities)
        written = sweep_checkpoint(args.checkpoint, args.data, args.format, args.split, modes,
                                   sparsities, args.out, args.limit, args.eval_size, args.device,
                                   args.tolerance)
    except (*USER_ERRORS, ValueError, TypeError) as exc:
        return fail("prune-sweep", exc)
    doc = json.loads(written["json"].read_text())
    base = doc["baseline"]
    print(f"unpruned: accuracy {base['accuracy']:.3f}, mIoU {base['miou']:.3f}"
          if base["miou"] is not None else "unpruned: mIoU undefined (no named class present)")
    for curve, s in doc["max_sparsity_within_tolerance"].items():
        print(f"  {curve:24s} holds mIoU within {args.tolerance:.2f} up to sparsity {s}")
    for path in written.values():
        print(f"wrote {path}")
    return 0
