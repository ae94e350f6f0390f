"""`uda-seg real-study`: simulator -> real CamVid, every row of the adaptation study with
the command that made it; resumable (rerun the same command after a stop).

    uda-seg real-study --camvid ../shared/data/CamVid-SegNet --sim data/sim_real
    uda-seg real-study ... --only source_only adapt_bn control fcd --seeds 0 1 2
    uda-seg real-study ... --report --docs docs/real_study \\
        --figure source_only_s0/best.pt fcd_s0/best.pt runs/deploy/model.onnx

Rows: upper_bound, source_only, adapt_bn (BatchNorm re-estimation on target frames),
control (lambda_adv = 0), fcd (all seeds); tfd, dwd, upper_bound (first seed);
upper_bound_seen (only when named). Measured on the val split and on a held-out drive of
the train split (default 0006R0) that no adaptation saw. See uda_seg_core/study/real.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from uda_seg_core.commands.common import USER_ERRORS, fail
from uda_seg_core.study.real import (
    ADAPTATION_STAGE,
    METHOD_BY_NAME,
    RealStudySettings,
    comparison_figure,
    run_study,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camvid", required=True, help="real target: any CamVid folder")
    parser.add_argument("--sim", required=True,
                        help="labelled source: the simulator's IDDA-format folder "
                             "(uda-seg make-synthetic ... --sim-style randomised)")
    parser.add_argument("--out", default="runs/real_study",
                        help="runs folder (default %(default)s)")
    parser.add_argument("--profile", default="config/real_cpu.yaml",
                        help="config every run starts from (default %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--heldout", nargs="+", default=["0006R0"], metavar="DRIVE",
                        help="train-split drives no adaptation sees (default 0006R0)")
    parser.add_argument("--only", nargs="+", choices=list(METHOD_BY_NAME), metavar="ROW",
                        help=f"rows to run: {', '.join(METHOD_BY_NAME)}")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. train.max_iters=2000)")
    parser.add_argument("--adapt-set", dest="adaptation", nargs="+", default=None,
                        metavar="KEY=VALUE",
                        help="settings of the adaptation stage (replace the default "
                             f"{' '.join(ADAPTATION_STAGE)})")
    parser.add_argument("--bn-batches", type=int, default=40)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: measure what exists and write the report")
    parser.add_argument("--docs", help="copy summary, report and each run's small JSON here")
    parser.add_argument("--figure", nargs="+", metavar="MODEL",
                        help="Fig. 5 grid on val frames: model files (relative to --out or "
                             "absolute), one column each, written to DOCS or OUT")


def run(args: argparse.Namespace) -> int:
    settings = RealStudySettings(
        camvid=args.camvid, sim=args.sim, out=args.out, profile=args.profile, seeds=args.seeds,
        heldout=args.heldout, only=args.only, overrides=args.overrides,
        adaptation=ADAPTATION_STAGE if args.adaptation is None else args.adaptation,
        bn_batches=args.bn_batches, dry_run=args.dry_run, report_only=args.report,
        docs=args.docs)
    try:
        summary = run_study(settings)
    except (*USER_ERRORS, RuntimeError) as exc:
        return fail("real-study", exc)
    print((Path(args.out) / "report.md").read_text() if not args.dry_run else "")
    if args.figure:
        files = [Path(m) if Path(m).exists() else Path(args.out) / m for m in args.figure]
        columns = [(f.parent.name or f.stem, str(f)) for f in files]
        path = comparison_figure(args.camvid, columns,
                                 Path(args.docs or args.out) / "fig5_camvid_val.png")
        print(f"figure: {path}")
    return 0 if summary or args.dry_run else 1
