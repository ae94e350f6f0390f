"""`uda-seg <command>`: the offline side of uda_seg (data, training, compression, export).

    uda-seg --help
    uda-seg make-synthetic --out data/synthetic
    uda-seg adapt --config config/adapt_idda2camvid.yaml adapt.discriminator=dwd

Each command lives in its own module of `uda_seg_core.commands`, which provides
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their command
runs (by name, from the table below), so `--help` stays fast and lists exactly the commands
that are installed. In a serving-only install (`pip install '.[serve]'`: no torch) every
command stops with one line saying to install the training extra.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# command -> (module, one-line help); each module is uda_seg_core/commands/<command>.py
COMMANDS: dict[str, tuple[str, str]] = {
    "make-synthetic": ("uda_seg_core.commands.make_synthetic",
                       "write the synthetic two-domain dataset (IDDA + CamVid formats)"),
    "preview": ("uda_seg_core.commands.preview",
                "PNG grid of images and colour labels of a dataset"),
    "train": ("uda_seg_core.commands.train", "supervised BiSeNet (upper bound, or source only)"),
    "adapt": ("uda_seg_core.commands.adapt",
              "output-space adversarial adaptation source -> target"),
    "adapt-bn": ("uda_seg_core.commands.adapt_bn",
                 "re-estimate BatchNorm statistics on target frames (no training, no labels)"),
    "evaluate": ("uda_seg_core.commands.evaluate",
                 "accuracy, per-class IoU and mIoU of a checkpoint"),
    "prune-sweep": ("uda_seg_core.commands.prune_sweep",
                    "post-training unstructured pruning sweep with plots"),
    "prune-structured": ("uda_seg_core.commands.prune_structured",
                         "channel pruning (+ fine-tune) for real speed-ups"),
    "export": ("uda_seg_core.commands.export", "export a checkpoint to ONNX (fp32 or INT8)"),
    "deploy": ("uda_seg_core.commands.deploy",
               "the fastest model (pruned, fp32 / INT8 ONNX) within an mIoU budget"),
    "model": ("uda_seg_core.commands.model",
              "the shipped recipe trained on labelled frames and deployed into one "
              "model.onnx, resumable"),
    "benchmark": ("uda_seg_core.commands.benchmark",
                  "latency of every backend and of the alternatives"),
    "real-study": ("uda_seg_core.commands.real_study",
                   "simulator -> real CamVid and CamVid day -> dusk: every row of the "
                   "adaptation study, resumable"),
    "report": ("uda_seg_core.commands.report",
               "the paper's tables and figures from a runs directory"),
    "reproduce": ("uda_seg_core.commands.reproduce",
                  "run every experiment of the reduced profile and report"),
}


# The extra that brings what the commands need beyond serving (torch, timm, onnx, ...).
TRAIN_EXTRA = "pip install 'uda_seg_ros[train]'"


def available_commands() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in COMMANDS.items()
            if importlib.util.find_spec(spec[0]) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uda-seg",
        description="Real-time semantic segmentation adapted from synthetic (IDDA) to real "
        "(CamVid) images. Run `uda-seg COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in available_commands().items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    if not argv or argv[0] not in commands:
        parser = build_parser()
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command '{argv[0]}'; choose from: {', '.join(commands)}")
        parser.parse_args(argv)  # prints --help and exits, or reports the bad flag
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = commands[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("uda_seg_core", "uda_seg_ros"):
            raise
        print(f"uda-seg {name}: needs the package {exc.name!r}, which this install lacks (a "
              f"serving install has only what the ROS node needs to serve an .onnx); install "
              f"the training extra: {TRAIN_EXTRA}", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog=f"uda-seg {name}",
                                     description=module.__doc__ or help_text,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
