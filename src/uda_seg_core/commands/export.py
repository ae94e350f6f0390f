"""`uda-seg export`: a checkpoint to ONNX (fp32, or INT8 by static quantisation), ready to serve.

    uda-seg export --checkpoint runs/x/best.pt --format onnx --out model.onnx
    uda-seg export --checkpoint runs/x/best.pt --format onnx --int8 \\
        --calibration data/synthetic/camvid --out model_int8.onnx

See `uda_seg_core.optimize.export` for the output modes, the metadata and the calibration.
After export the command compares the ONNX model with the eager one on the same inputs and
prints the pixel agreement of the argmax.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uda_seg_core.commands.common import size_type
from uda_seg_core.optimize.export import (
    CALIBRATION_METHODS,
    DEFAULT_OPSET,
    FP32_MIN_AGREEMENT,
    MODES,
    export_checkpoint,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="uda_seg checkpoint (.pt), pruned or not")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    parser.add_argument("--mode", default="pred", choices=MODES,
                        help="pred: uint8 class ids (argmax inside); logits: float scores")
    parser.add_argument("--size", type=size_type, default=None,
                        help="input HEIGHTxWIDTH (default: the checkpoint's inference.input_size)")
    parser.add_argument("--int8", action="store_true",
                        help="static INT8 quantisation (needs --calibration)")
    parser.add_argument("--calibration", default=None,
                        help="folder of camera frames or dataset root to calibrate INT8 on")
    parser.add_argument("--calibration-frames", type=int, default=32,
                        help="frames used for calibration, spread over the folder (0 = all)")
    parser.add_argument("--calibration-method", default="minmax", choices=CALIBRATION_METHODS)
    parser.add_argument("--static-shape", action="store_true",
                        help="fix the input at (1, 3, H, W) instead of dynamic batch, height and "
                        "width")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--check-frames", type=int, default=4,
                        help="frames (or random inputs) used to compare ONNX with eager (0 = skip)")
    parser.add_argument("--out", required=True, help="output .onnx file")


def print_check(summary: dict) -> int:
    """The agreement with eager PyTorch; exit status 1 when an fp32 export disagrees."""
    check = summary.get("check")
    if not check:
        return 0
    line = (f"argmax agreement with eager PyTorch: {100 * check['agreement']:.2f}% of "
            f"{check['pixels']} pixels")
    if "max_abs_logit_diff" in check:
        line += f", max |logit difference| {check['max_abs_logit_diff']:.2e}"
    print(line)
    if summary["precision"] == "fp32" and check["agreement"] < FP32_MIN_AGREEMENT:
        print(f"error: fp32 export disagrees with eager on more than "
              f"{100 * (1 - FP32_MIN_AGREEMENT):.0f}% of pixels; the export is wrong")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = export_checkpoint(
        args.checkpoint, args.out, mode=args.mode, size=args.size, int8=args.int8,
        calibration=args.calibration, calibration_frames=args.calibration_frames,
        calibration_method=args.calibration_method, dynamic_shape=not args.static_shape,
        opset=args.opset, check_frames=args.check_frames)
    size_mb = Path(summary["out"]).stat().st_size / 2**20
    print(f"wrote {summary['out']} ({summary['precision']}, {summary['mode']} mode, "
          f"{summary['size'][0]}x{summary['size'][1]}, {size_mb:.1f} MiB)")
    return print_check(summary)
