"""What several commands share: argument groups, the size flag, and the one-line error."""
from __future__ import annotations

import argparse
import sys

from uda_seg_core.checkpoint import CheckpointError
from uda_seg_core.config import ConfigError, parse_size
from uda_seg_core.data import FORMAT_CHOICES, DatasetFormatError
from uda_seg_core.labels import LabelSetError

# Errors a user can fix from the message alone: printed as one line, exit status 2.
USER_ERRORS = (ConfigError, CheckpointError, DatasetFormatError, LabelSetError)


def fail(command: str, exc: BaseException) -> int:
    """Print `uda-seg COMMAND: message` on stderr; the exit status of a refused request."""
    print(f"uda-seg {command}: {exc}", file=sys.stderr)
    return 2


def size_type(text: str) -> tuple[int, int]:
    """argparse type for HEIGHTxWIDTH flags."""
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by `uda-seg train` and `uda-seg adapt`."""
    parser.add_argument("--config", help="experiment YAML (differences from the defaults)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last.pt (its config.yaml is "
                             "used)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again even if the run directory already holds a run")
    parser.add_argument("--stop-at", type=int, metavar="N",
                        help="stop after iteration N with a resumable last.pt (train in pieces)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. train.lr=0.01 adapt.discriminator=dwd")


def add_checkpoint_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that measures a checkpoint on a labelled split shares."""
    parser.add_argument("--checkpoint", required=True, help="a .pt written by uda-seg train/adapt")
    parser.add_argument("--data", required=True,
                        help="labelled dataset folder (e.g. data/synthetic/camvid)")
    parser.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                        help="dataset layout (default: auto, read off the folder)")
    parser.add_argument("--split", default="test",
                        help="split to measure: test or val (default: test)")
    parser.add_argument("--sequences", nargs="+", default=(), metavar="SEQ",
                        help="only frames of these sequences (e.g. 0006R0: a drive held out of "
                        "adaptation)")
    parser.add_argument("--eval-size", nargs=2, type=int, metavar=("H", "W"),
                        help="resize images to H W first (default: the checkpoint's "
                        "data.eval_size)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
