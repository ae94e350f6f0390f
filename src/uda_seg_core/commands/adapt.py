"""`uda-seg adapt`: output-space adversarial adaptation, source -> target, in one stage.

    uda-seg adapt --config config/adapt_idda2camvid.yaml                      # FCD
    uda-seg adapt --config config/adapt_idda2camvid.yaml adapt.discriminator=dwd
    uda-seg adapt --resume runs/IDDA2CamVid_bisenet-r101_fcd                  # continue
    torchrun --nproc_per_node 2 -m uda_seg_core.cli adapt --config config/adapt_idda2camvid.yaml

Each iteration: a generator step on one labelled source batch and one unlabelled target
batch (D frozen), then a discriminator step (eqs. 1-5 of the paper; see
`uda_seg_core.train.adversarial`). `adapt.discriminator` picks FCD, TFD, DWD or CPD.
"""
from __future__ import annotations

import argparse

from uda_seg_core.commands.common import add_run_arguments
from uda_seg_core.commands.train import run_command
from uda_seg_core.train.adversarial import build_adversarial_trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_command("adapt", args, build_adversarial_trainer)
