"""`uda-seg deploy`: the fastest model within an mIoU budget, from an adapted checkpoint.

    uda-seg deploy --checkpoint runs/adapted/best.pt --data ../shared/data/CamVid-SegNet \\
        --out runs/deploy
    uda-seg deploy --checkpoint C --data data/synthetic --out D --max-loss 1.0 \\
        --input-size 360x480 --ratios 0.3,0.5 --finetune-iters 300 --calibration-frames 16

Candidates: the unpruned network and structured-pruned copies (BatchNorm re-estimated,
distilled from the adapted network on unlabelled target frames), each as ONNX fp32 and
INT8; at an --input-size below the adapted network's own size also the unpruned network
after resolution distillation (it sees the frames at the input size, the adapted network
at its own); all measured on the data's val split and timed interleaved in one run. Writes
OUT/model.onnx, OUT/deploy.json and OUT/deploy.md; a rerun reuses finished work. See
`uda_seg_core.optimize.deploy`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from uda_seg_core.commands.common import USER_ERRORS, fail, size_type
from uda_seg_core.optimize.deploy import (
    DEFAULT_RATIOS,
    PER_CHANNEL_CHOICES,
    DeployError,
    DeployRequest,
    deploy,
)
from uda_seg_core.optimize.export import ExportError
from uda_seg_core.optimize.structured import StructuredPruningError
from uda_seg_core.train.finetune import FinetuneError


def ratios_type(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(" ", ",").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ratios wants numbers like 0.3,0.5, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DeployRequest("", "", "")
    parser.add_argument("--checkpoint", required=True, help="the adapted checkpoint (.pt)")
    parser.add_argument("--data", required=True,
                        help="target data: a CamVid folder (either layout) or a make-synthetic "
                        "output; its val split measures, its train frames calibrate and "
                        "fine-tune")
    parser.add_argument("--out", required=True,
                        help="folder for model.onnx, deploy.json, deploy.md (and work/)")
    parser.add_argument("--max-loss", type=float, default=d.max_loss,
                        help="mIoU points the served model may lose against the adapted fp32 "
                        "network (default: %(default)s)")
    parser.add_argument("--input-size", type=size_type, default=None,
                        help="HxW the model runs at (default: the checkpoint's "
                        "inference.input_size)")
    parser.add_argument("--ratios", type=ratios_type, default=list(DEFAULT_RATIOS),
                        help="channel-pruning ratios besides the unpruned network (default: "
                        f"{','.join(map(str, DEFAULT_RATIOS))})")
    parser.add_argument("--finetune-iters", type=int, default=d.finetune_iters,
                        help="distillation iterations after each cut, and of the resolution "
                        "distillation at a smaller --input-size (default: %(default)s)")
    parser.add_argument("--calibration-frames", type=int, default=d.calibration_frames,
                        help="target frames INT8 is calibrated on (default: %(default)s)")
    parser.add_argument("--per-channel", choices=PER_CHANNEL_CHOICES, default=d.per_channel,
                        help="INT8 weight scales per channel, per tensor, or both as separate "
                        "candidates (default: %(default)s)")
    parser.add_argument("--bn-batches", type=int, default=d.bn_batches,
                        help="target batches to re-estimate BatchNorm on after each cut")
    parser.add_argument("--split", default=d.split,
                        help="labelled split every candidate is measured on (default: val; "
                        "never choose on the split you report)")
    parser.add_argument("--eval-limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and ONNX Runtime threads (0: $OMP_NUM_THREADS, else every "
                        "usable core)")
    parser.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per candidate")
    parser.add_argument("--warmup", type=int, default=d.warmup)
    parser.add_argument("--case-budget", type=float, default=d.case_budget,
                        help="seconds of timed runs per candidate; slower ones repeat less")
    parser.add_argument("--device", default="auto", help="fine-tune device: auto | cpu | cuda")
    parser.add_argument("--fresh", action="store_true", help="redo all work, reuse nothing")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides for the fine-tune (e.g. train.lr=0.001)")


def _command_line() -> str:
    if sys.argv[1:2] == ["deploy"]:
        return "uda-seg deploy " + " ".join(sys.argv[2:])
    return " ".join(sys.argv)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    request = DeployRequest(
        checkpoint=args.checkpoint, data=args.data, out=args.out, max_loss=args.max_loss,
        input_size=args.input_size, ratios=args.ratios, finetune_iters=args.finetune_iters,
        calibration_frames=args.calibration_frames, per_channel=args.per_channel,
        bn_batches=args.bn_batches, split=args.split, eval_limit=args.eval_limit,
        threads=args.threads, repeats=args.repeats, warmup=args.warmup,
        case_budget=args.case_budget, device=args.device, fresh=args.fresh,
        overrides=args.overrides, command=_command_line())
    try:
        doc = deploy(request, progress=sys.stderr.isatty())
    except (*USER_ERRORS, DeployError, ExportError, StructuredPruningError, FinetuneError) as exc:
        return fail("deploy", exc)
    print((Path(args.out) / "deploy.md").read_text())
    chosen = next(c for c in doc["candidates"] if c["chosen"])
    loss = chosen["loss_points"]
    versus = f"{loss:.2f} points below" if loss >= 0.005 else (
        f"{-loss:.2f} points above" if loss <= -0.005 else "equal to")
    print(f"served: {doc['model']} = {chosen['id']} (p50 {chosen['p50_ms']:.1f} ms, mIoU "
          f"{100 * chosen['miou']:.2f} %, {versus} the adapted fp32 network)")
    return 0
