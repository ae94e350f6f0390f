"""`uda-seg real-study`: every row of the adaptation study on real CamVid with the command
that made it, for one domain pair per folder; resumable (rerun the same command after a
stop).

    uda-seg real-study --camvid ../shared/data/CamVid-SegNet --sim data/sim_real/idda
    uda-seg real-study --pair day-dusk --camvid ../shared/data/CamVid-SegNet
    uda-seg real-study ... --only source_only adapt_bn control fcd --seeds 0 1 2
    uda-seg real-study ... --report --docs docs/real_study \\
        --figure source_only_s0/best.pt fcd_s0/best.pt runs/deploy/model.onnx

Pairs: sim-real (the simulator's labels -> CamVid; held-out drive 0006R0; runs/real_study)
and day-dusk (CamVid's daytime labels -> its dusk drive 0001TP: the first half of its frames
adapts, the second half only evaluates; runs/day_dusk). Rows: upper bound(s), source_only,
adapt_bn, control (lambda_adv = 0), fcd, minent, st1, fcd_st, st_bn, fcd_st_bn (all seeds);
tfd, dwd (sim-real, first seed); st2, st_bn_separate, upper_bound_seen, fcd_lambda0.01 only
when named. See uda_seg_core/study/real.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from uda_seg_core.commands.common import USER_ERRORS, fail
from uda_seg_core.study.real import (
    ADAPTATION_STAGE,
    PAIRS,
    RealStudySettings,
    comparison_figure,
    run_study,
)
from uda_seg_core.study.real_rows import ALL_ROWS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pair", choices=list(PAIRS), default="sim-real",
                        help="sim-real: simulator labels -> CamVid (default); day-dusk: "
                             "CamVid daytime labels -> its dusk drive, no simulator")
    parser.add_argument("--camvid", required=True, help="real CamVid: any CamVid folder")
    parser.add_argument("--sim", default="",
                        help="sim-real's labelled source: the simulator's IDDA-format folder "
                             "(uda-seg make-synthetic ... --sim-style randomised)")
    parser.add_argument("--out", default=None,
                        help="runs folder, one per pair (default: runs/real_study for "
                             "sim-real, runs/day_dusk for day-dusk)")
    parser.add_argument("--profile", default="config/real_cpu.yaml",
                        help="config every run starts from (default %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--heldout", nargs="+", default=["0006R0"], metavar="DRIVE",
                        help="sim-real: train-split drives no adaptation sees (default 0006R0)")
    parser.add_argument("--dusk-drive", default="0001TP", metavar="DRIVE",
                        help="day-dusk: the dusk drive; its first half (DRIVE:1/2) adapts, "
                             "its second half (DRIVE:2/2) only evaluates (default 0001TP)")
    parser.add_argument("--only", nargs="+", choices=list(ALL_ROWS), metavar="ROW",
                        help=f"rows to run: {', '.join(ALL_ROWS)} (those of the pair)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. train.max_iters=2000)")
    parser.add_argument("--adapt-set", dest="adaptation", nargs="+", default=None,
                        metavar="KEY=VALUE",
                        help="settings of the adaptation stage (replace the default "
                             f"{' '.join(ADAPTATION_STAGE)}); a row's own method settings "
                             "still win")
    parser.add_argument("--bn-batches", type=int, default=40)
    parser.add_argument("--grad-batches", type=int, default=8,
                        help="batches of the adversarial / segmentation gradient measurement "
                             "on each D row's last.pt (0: skip it; default %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: measure what exists and write the report")
    parser.add_argument("--docs", help="copy summary, report and each run's small JSON here")
    parser.add_argument("--figure", nargs="+", metavar="MODEL",
                        help="Fig. 5 grid on val frames: model files (relative to --out or "
                             "absolute), one column each, written to DOCS or OUT")


def run(args: argparse.Namespace) -> int:
    settings = RealStudySettings(
        camvid=args.camvid, sim=args.sim, pair=args.pair, out=args.out or "",
        profile=args.profile, seeds=args.seeds, heldout=args.heldout, dusk=args.dusk_drive,
        only=args.only, overrides=args.overrides,
        adaptation=ADAPTATION_STAGE if args.adaptation is None else args.adaptation,
        bn_batches=args.bn_batches, grad_batches=args.grad_batches, dry_run=args.dry_run,
        report_only=args.report, docs=args.docs)
    out = settings.out_dir
    try:
        summary = run_study(settings)
        if args.figure and not args.dry_run:
            files = [Path(m) if Path(m).exists() else out / m for m in args.figure]
            columns = [(f.parent.name or f.stem, str(f)) for f in files]
            path = comparison_figure(args.camvid, columns,
                                     Path(args.docs or out) / "fig5_camvid_val.png")
    except (*USER_ERRORS, RuntimeError) as exc:
        return fail("real-study", exc)
    print((out / "report.md").read_text() if not args.dry_run else "")
    if args.figure and not args.dry_run:
        print(f"figure: {path}")
    return 0 if summary or args.dry_run else 1
