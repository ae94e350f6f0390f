"""`uda-seg preview`: a PNG grid of images and colour labels of a dataset.

    uda-seg preview data/synthetic                      # both domains of a make-synthetic output
    uda-seg preview data/CamVid --split test --n 6 --out camvid.png
"""
from __future__ import annotations

import argparse

from uda_seg_core.commands.common import USER_ERRORS, fail
from uda_seg_core.data import FORMAT_CHOICES
from uda_seg_core.data.preview import make_preview


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset folder, or a make-synthetic output folder")
    parser.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                        help="dataset layout (default: detect)")
    parser.add_argument("--split", nargs="+", default=None,
                        help="split(s) to show (default: every CamVid split; IDDA 'all')")
    parser.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    parser.add_argument("--n", type=int, default=8, help="rows (samples) per dataset (default 8)")
    parser.add_argument("--label-set", default="camvid12",
                        help="the classes the labels map to: camvid12 (default) or a label set "
                             "YAML")


def run(args: argparse.Namespace) -> int:
    try:
        path = make_preview(args.root, args.out, args.format, args.split, args.n,
                            args.label_set)
    except USER_ERRORS as exc:
        return fail("preview", exc)
    print(f"wrote {path}")
    return 0
