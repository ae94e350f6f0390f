"""`uda-seg train`: supervised BiSeNet on one labelled domain.

    uda-seg train --config config/train_camvid.yaml          # the upper bound (target labels)
    uda-seg train --config config/train_source_only.yaml     # the 'source only' baseline
    uda-seg train --config config/train_camvid.yaml train.epochs=10 model.backbone=resnet18
    uda-seg train --resume runs/CamVid_bisenet-r101_supervised   # continue a stopped run
    torchrun --nproc_per_node 2 -m uda_seg_core.cli train --config ...

The labelled domain is `data.source_format` / `data.source_root` (CamVid's train split for
the upper bound, IDDA for source only). Model selection always uses the target val
split (`data.target_*`, `data.val_split`) and the selected weights are reported on the
target test split, so the upper bound and the baselines are measured the same way.
Loss: eq. 4 of the paper, dice on the main output plus two auxiliary dice terms.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from uda_seg_core.commands.common import USER_ERRORS, add_run_arguments, fail
from uda_seg_core.metrics import summary_table
from uda_seg_core.train.loop import launch
from uda_seg_core.train.run_dir import RunRequest
from uda_seg_core.train.supervised import build_supervised_trainer
from uda_seg_core.train.trainer import Trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)


def report_test(doc: dict) -> None:
    """The final result on stdout, by the first process of a torchrun job only."""
    test = doc.get("test")
    if not test or int(os.environ.get("RANK", "0")) != 0:
        return
    if "skipped" in test:
        print(f"\n{doc['run']}: {test['skipped']}")
        return
    print(f"\n{doc['run']}: target {test['split']} split, weights of {test['checkpoint']}\n"
          f"{summary_table(test)}")


def run_command(command: str, args: argparse.Namespace | RunRequest,
                build: Callable[..., Trainer]) -> int:
    """`launch` for the command line: configuration, data and checkpoint problems become one
    clear line on stderr and exit status 2 instead of a traceback."""
    request = RunRequest(config=getattr(args, "config", None),
                         overrides=list(getattr(args, "overrides", None) or []),
                         resume=getattr(args, "resume", None),
                         overwrite=getattr(args, "overwrite", False),
                         stop_at=getattr(args, "stop_at", None))
    try:
        doc = launch(command, request, build)
    except USER_ERRORS as exc:
        return fail(command, exc)
    report_test(doc)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_command("train", args, build_supervised_trainer)
