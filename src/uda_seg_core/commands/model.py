"""`uda-seg model`: the shipped recipe trained on your labelled frames and deployed into one
model.onnx that the ROS 2 node serves with no other flag.

    uda-seg model --data ../shared/data/CamVid-SegNet          # -> runs/model/model.onnx
    uda-seg model --data data/lanes --out runs/lanes data.label_set=lanes.yaml model.num_classes=3
    segmentation_node --ros-args -p model_path:=runs/model/model.onnx

What it does: trains config/real_pretrained.yaml (BiSeNet on ImageNet-pretrained
EfficientNet-Lite0, 2000 iterations) on DATA's labelled train split, choosing the
checkpoint on its val split (`uda-seg train`, in its own process, with its progress bar),
then deploys it (`uda-seg deploy`, unpruned network only: ONNX fp32 and INT8 per-channel,
calibrated on 32 train frames, scored on val at --input-size; the faster one within 1.0
mIoU point of the trained network is served). DATA is CamVid in either layout, or a plain
folder (images/, labels/) with a label set given as data.label_set=FILE.

How long: about 25 min on 2 CPU cores for CamVid (22.5 measured), nearly all of it training.

Resumable: run the same command again after a stop (Ctrl-C, a crash): the training
continues from its last checkpoint (OUT/train/last.pt, every 250 iterations), a finished
training is reused, and deploy reuses its finished exports and evaluations (it times the
candidates again). Changed settings train again; --fresh redoes everything.

Writes: OUT/model.onnx (class names, palette, normalisation, input size and provenance in
its metadata), OUT/model.json (val mIoU of the trained network and of the served model,
p50 latency and threads, the serving commands, the wall time of each stage), OUT/train/
(the training run: config.yaml, metrics.json, best.pt, last.pt) and OUT/deploy/
(deploy.json, deploy.md, work/). A missing or unreadable --data is refused before anything
is written. See uda_seg_core/study/model.py.
"""
from __future__ import annotations

import argparse
import logging
import sys

from uda_seg_core.commands.common import USER_ERRORS, fail, size_type
from uda_seg_core.optimize.deploy import DeployError
from uda_seg_core.optimize.export import ExportError
from uda_seg_core.study.model import PROFILE, ModelSettings, make_model, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ModelSettings("")
    parser.add_argument("--data", required=True,
                        help="labelled frames with train and val splits: a CamVid folder "
                        "(either layout) or a plain folder with a label set")
    parser.add_argument("--out", default=d.out,
                        help="folder for model.onnx, model.json, train/ and deploy/ "
                        "(default: %(default)s)")
    parser.add_argument("--profile", default=str(PROFILE),
                        help="the training recipe (default: the shipped "
                        "config/real_pretrained.yaml)")
    parser.add_argument("--input-size", type=size_type, default=d.input_size,
                        help="HxW the served model runs at (default: 360x480, a CamVid "
                        "frame); the training selects its checkpoint at this size too")
    parser.add_argument("--threads", type=int, default=d.threads,
                        help="threads deploy measures the model on (0: every usable core)")
    parser.add_argument("--fresh", action="store_true",
                        help="train again from scratch and redo every deploy stage")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides of the training config, after the profile "
                        "(e.g. train.max_iters=1000 data.label_set=lanes.yaml)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = ModelSettings(
        data=args.data, out=args.out, profile=args.profile, input_size=args.input_size,
        overrides=args.overrides, fresh=args.fresh, threads=args.threads,
        progress=sys.stderr.isatty(),
        command="uda-seg model " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["model"]
        else "uda-seg model")
    try:
        doc = make_model(settings, say=lambda line: print(line, flush=True))
    except (*USER_ERRORS, DeployError, ExportError, RuntimeError) as exc:
        return fail("model", exc)
    except KeyboardInterrupt:
        print(f"uda-seg model: stopped; run the same command again to resume (the training "
              f"from {settings.out}/train/last.pt)", file=sys.stderr)
        return 130
    print(summary(doc))
    return 0
