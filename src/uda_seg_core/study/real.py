"""The simulator -> real CamVid study: does adaptation help on real frames, and on a drive it
never saw?

    uda-seg real-study --camvid ../shared/data/CamVid-SegNet --sim data/sim_real \\
        --out runs/real_study                          # every row, 3 seeds where it matters
    uda-seg real-study ... --only source_only fcd      # some rows; a rerun resumes the rest
    uda-seg real-study ... --report --docs docs/real_study   # tables, JSON and figures only

Rows (one run per seed; `seeds` of the settings for the rows compared across seeds, the
first seed only for the others):

| row | what trains | seeds |
|---|---|---|
| upper_bound | BiSeNet on CamVid's train labels (every drive) | first |
| upper_bound_seen | the same on the adaptation drives' labels only (optional, --only) | first |
| source_only | BiSeNet on the simulator's labels | all |
| adapt_bn | source_only's network, BatchNorm statistics re-estimated on target frames | all |
| control | adaptation stage with lambda_adv = 0 (target frames through the network, no D) | all |
| fcd / tfd / dwd | adaptation stage, adversarial with that discriminator | all / first |
| fcd_lambda0.01 | FCD with a 10x stronger adversarial term (optional, --only) | first |

The adaptation stage continues the same seed's source_only network (ADAPTATION_STAGE:
fewer iterations, a lower learning rate), so control, FCD, TFD and DWD differ from each
other only in the adversarial term, and from source_only only in that stage.

Every run uses the same profile (config/real_cpu.yaml unless told otherwise) and is a
`uda-seg train | adapt | adapt-bn` in its own process. The unlabelled target frames of
the adaptation come from CamVid's train split WITHOUT the held-out drive(s) (default
0006R0); model selection uses the val split (0016E5: the same drive as 204 train frames,
so whatever the target frames teach shows there); each selected network is then measured
on the held-out drive's labels, which no adaptation saw. Metrics at the label's
resolution, 11 named classes.

Resumable: a finished run is skipped, a stopped one continues from its last.pt, one whose
settings changed starts again; evaluations are stages redone only when their checkpoint
changed. OUT/summary.json holds every figure; `--docs DIR` copies the small JSON files
(no checkpoints) and the report to DIR, for the repository.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_core.config import Config, ConfigError, dump_config, load_config
from uda_seg_core.data import build_dataset, sequence_of
from uda_seg_core.evaluate import evaluate_checkpoint
from uda_seg_core.inference import Segmenter
from uda_seg_core.reporting import (
    atomic_write_json,
    atomic_write_text,
    markdown_table,
    prediction_grid,
)
from uda_seg_core.stages import Stages
from uda_seg_core.study.reproduce import cpu_seconds, run_state
from uda_seg_core.train.batchnorm import adapt_batchnorm

Say = Callable[[str], None]
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


@dataclass(frozen=True)
class Method:
    """One row of the study."""

    name: str
    label: str
    command: str  # train | adapt | adapt-bn
    overrides: tuple[str, ...] = ()
    all_seeds: bool = True  # False: the first seed only
    base: str = ""  # the row whose best.pt (same seed) this one starts from
    labelled_target: str = ""  # '', 'all' or 'seen': trains on CamVid labels (upper bounds)
    optional: bool = False  # only with --only


METHODS: tuple[Method, ...] = (
    Method("upper_bound", "upper bound: CamVid train labels (every drive)", "train",
           all_seeds=False, labelled_target="all"),
    Method("upper_bound_seen", "upper bound: CamVid labels of the adaptation drives only",
           "train", all_seeds=False, labelled_target="seen", optional=True),
    Method("source_only", "source only: simulator labels", "train"),
    Method("adapt_bn", "BatchNorm re-estimation on target frames (no training)", "adapt-bn",
           base="source_only"),
    Method("control", "adaptation, lambda_adv = 0 (control)", "adapt",
           ("adapt.discriminator=fcd", "adapt.lambda_adv=0.0"), base="source_only"),
    Method("fcd", "adapted with FCD", "adapt", ("adapt.discriminator=fcd",), base="source_only"),
    Method("tfd", "adapted with TFD", "adapt", ("adapt.discriminator=tfd",), all_seeds=False,
           base="source_only"),
    Method("dwd", "adapted with DWD", "adapt", ("adapt.discriminator=dwd",), all_seeds=False,
           base="source_only"),
    # lambda_adv = 0.001 makes the adversarial gradient ~0.2% of the segmentation one here
    # (benchmarks/adversarial_gradient.py): does a 10x stronger term change anything?
    Method("fcd_lambda0.01", "adapted with FCD, lambda_adv = 0.01 (10x the paper's)", "adapt",
           ("adapt.discriminator=fcd", "adapt.lambda_adv=0.01"), all_seeds=False,
           base="source_only", optional=True),
)
# The adaptation stage (control and discriminators alike) continues the same seed's
# source-only network: "trained on synthetic data, then adapted" (the paper's sec. I), at a
# lower learning rate, validated more often.
ADAPTATION_STAGE = ("train.max_iters=1000", "train.lr=0.005", "train.val_every=250",
                    "train.checkpoint_every=250")
METHOD_BY_NAME = {m.name: m for m in METHODS}


@dataclass
class RealStudySettings:
    """One `uda-seg real-study` (the flags, as plain data)."""

    camvid: str  # the real target: any CamVid folder (layout read off it)
    sim: str  # the labelled source: the simulator's IDDA-format output
    out: str = "runs/real_study"
    profile: str = "config/real_cpu.yaml"
    seeds: Sequence[int] = (0, 1, 2)
    heldout: Sequence[str] = ("0006R0",)  # drives of the train split no adaptation sees
    only: Sequence[str] | None = None  # row names; None = every non-optional row
    overrides: Sequence[str] = field(default_factory=list)  # KEY=VALUE for every run
    adaptation: Sequence[str] = ADAPTATION_STAGE  # KEY=VALUE for the adaptation rows
    bn_batches: int = 40
    dry_run: bool = False
    report_only: bool = False
    docs: str | None = None  # copy JSON + report here


@dataclass
class PlannedRun:
    name: str  # e.g. fcd_s1
    method: Method
    seed: int
    cfg: Config | None  # None for adapt-bn


def chosen_methods(only: Sequence[str] | None) -> list[Method]:
    if not only:
        return [m for m in METHODS if not m.optional]
    unknown = [n for n in only if n not in METHOD_BY_NAME]
    if unknown:
        raise ConfigError(f"unknown row(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(METHOD_BY_NAME)}")
    wanted = [METHOD_BY_NAME[n] for n in only]
    bases = [METHOD_BY_NAME[m.base] for m in wanted if m.base and m.base not in only]
    return [m for m in METHODS if m in wanted or m in bases]


def adaptation_drives(camvid: str, heldout: Sequence[str]) -> list[str]:
    """The drives of the target's train split that adaptation may see (all but held out)."""
    names = build_dataset("auto", camvid, "train", with_labels=False).names
    drives = sorted({sequence_of(n) for n in names})
    missing = [d for d in heldout if d not in drives]
    if missing:
        raise ConfigError(f"held-out drive(s) {', '.join(missing)} not in {camvid}'s train "
                          f"split (it holds {', '.join(drives)})")
    seen = [d for d in drives if d not in heldout]
    if not seen:
        raise ConfigError("every drive of the train split is held out: nothing to adapt on")
    return seen


def run_config(s: RealStudySettings, method: Method, seed: int, name: str,
               seen: list[str]) -> Config:
    """The profile, the row's settings, the data roots, the seed and --set overrides."""
    drives = "[" + ",".join(seen) + "]"
    data = [f"data.target_root={s.camvid}", "data.target_format=auto",
            f"data.target_sequences={drives}"]
    if method.labelled_target:
        data += [f"data.source_root={s.camvid}", "data.source_format=auto"]
        if method.labelled_target == "seen":
            data.append(f"data.source_sequences={drives}")
    else:
        data += [f"data.source_root={s.sim}", "data.source_format=auto"]
    run = [f"train.seed={seed}", f"train.out_dir={s.out}", f"train.run_name={name}"]
    stage = []  # after --set: the adaptation stage's own settings win for its rows
    if method.base:
        stage = [*s.adaptation,
                 f"train.init_from={Path(s.out) / f'{method.base}_s{seed}' / 'best.pt'}"]
    return load_config(s.profile, [*data, *method.overrides, *run, *s.overrides, *stage])


def plan(s: RealStudySettings) -> list[PlannedRun]:
    seen = adaptation_drives(s.camvid, s.heldout)
    if not s.seeds:
        raise ConfigError("--seeds: give at least one seed")
    runs = []
    for method in chosen_methods(s.only):
        for seed in (s.seeds if method.all_seeds else s.seeds[:1]):
            name = f"{method.name}_s{seed}"
            cfg = None if method.command == "adapt-bn" else run_config(s, method, seed, name, seen)
            runs.append(PlannedRun(name, method, seed, cfg))
    return runs


def train_run(run: PlannedRun, out: Path, say: Say, dry_run: bool) -> float:
    """Train (or resume, or skip) one train/adapt run in its own process; its wall seconds."""
    run_dir = out / run.name
    state = run_state(run_dir, run.cfg)
    config_path = out / "configs" / f"{run.name}.yaml"
    base = [sys.executable, "-m", "uda_seg_core.cli", run.method.command]
    cmd = ([*base, "--resume", str(run_dir)] if state == "resume" else
           [*base, "--config", str(config_path), *(["--overwrite"] if state == "changed" else [])])
    if state == "done":
        say(f"{run.name}: finished earlier, skipped")
        return 0.0
    say(f"{run.name} ({state}): {' '.join(cmd[1:])}")
    if dry_run:
        return 0.0
    config_path.parent.mkdir(parents=True, exist_ok=True)
    dump_config(run.cfg, config_path)
    start = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise RuntimeError(f"{run.name}: `{' '.join(cmd[1:])}` exited with status {code}")
    return time.perf_counter() - start


def adapt_bn_run(run: PlannedRun, s: RealStudySettings, out: Path, seen: list[str],
                 say: Say) -> float:
    """BatchNorm re-estimation of the base row's selected network (same seed): a stage."""
    base = out / f"{run.method.base}_s{run.seed}" / "best.pt"
    if not base.is_file():
        raise RuntimeError(f"{run.name}: {base} not found; run the {run.method.base} row first")
    target = out / run.name / "best.pt"
    params = {"checkpoint": str(base), "written": base.stat().st_mtime_ns, "drives": seen,
              "batches": s.bn_batches, "seed": run.seed}
    start = time.perf_counter()

    def action() -> None:
        say(f"{run.name}: uda-seg adapt-bn --checkpoint {base} --data {s.camvid} --sequences "
            f"{' '.join(seen)} --batches {s.bn_batches} --seed {run.seed} --out {target}")
        adapt_batchnorm(base, s.camvid, target, batches=s.bn_batches, sequences=seen,
                        seed=run.seed)

    Stages(out, chained=False).run(run.name, params, [target], action, say=say)
    return time.perf_counter() - start


def evaluations(run: PlannedRun, s: RealStudySettings, out: Path, say: Say) -> dict:
    """Val and held-out figures of the run's selected network (each an evaluation stage)."""
    best = out / run.name / "best.pt"
    result = {}
    for key, split, sequences in (("val", "val", ()), ("heldout", "train", tuple(s.heldout))):
        folder = out / run.name / f"eval_{key}"
        params = {"checkpoint": str(best), "written": best.stat().st_mtime_ns, "split": split,
                  "sequences": list(sequences)}

        def action(split=split, sequences=sequences, folder=folder) -> None:
            say(f"{run.name}: uda-seg evaluate --checkpoint {best} --data {s.camvid} --split "
                f"{split}{' --sequences ' + ' '.join(sequences) if sequences else ''}")
            evaluate_checkpoint(best, s.camvid, split=split, sequences=sequences, out=folder,
                                progress=False)

        Stages(out, chained=False).run(f"{run.name}_eval_{key}", params,
                                       [folder / "metrics.json"], action, say=say)
        result[key] = json.loads((folder / "metrics.json").read_text())
    return result


def run_record(run: PlannedRun, out: Path, figures: dict, seconds: float,
               earlier: dict | None = None) -> dict:
    """What the summary keeps of one run (small: no per-pixel data). `seconds` = 0 (the run
    was not trained by this invocation: skipped, or `--report`) keeps the wall time the
    `earlier` record measured."""
    keep = ("miou", "miou_all", "pixel_accuracy", "per_class_iou", "images")
    record = {"method": run.method.name, "seed": run.seed, "command": run.method.command,
              **{k: {f: v[f] for f in keep if f in v} for k, v in figures.items()}}
    metrics = out / run.name / "metrics.json"
    if metrics.is_file():
        doc = json.loads(metrics.read_text())
        record.update(iterations=doc.get("max_iters"),
                      seconds_per_iteration=doc.get("seconds_per_iteration"),
                      best_iteration=(doc.get("best") or {}).get("iteration"))
    if seconds:
        record["wall_seconds"] = round(seconds, 1)
    elif (earlier or {}).get("wall_seconds"):
        record["wall_seconds"] = earlier["wall_seconds"]
    return record


def aggregate(records: dict[str, dict]) -> dict[str, dict]:
    """Per row: mean, sample standard deviation, min and max over seeds of val and held-out
    mIoU (11 named classes)."""
    rows: dict[str, dict] = {}
    for method in METHODS:
        mine = [r for r in records.values() if r["method"] == method.name]
        if not mine:
            continue
        row = {"label": method.label, "seeds": [r["seed"] for r in mine]}
        for key in ("val", "heldout"):
            values = [r[key]["miou"] for r in mine if r.get(key, {}).get("miou") is not None]
            if values:
                row[key] = {"mean": statistics.fmean(values), "values": values,
                            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                            "min": min(values), "max": max(values)}
        rows[method.name] = row
    return rows


def reportable(run: PlannedRun, out: Path, say: Say) -> bool:
    """`--report` quotes finished runs only: a run still training (or stopped early, or
    trained with other settings than these flags) already has a `best.pt`, and its figure
    would be quoted as the row's. Bug guarded: a report taken while the study ran recorded
    the 200-iteration checkpoint of a 600-iteration run."""
    if not (out / run.name / "best.pt").is_file():
        return False
    if run.method.command == "adapt-bn":  # a stage: its best.pt is written when it is done
        return True
    state = run_state(out / run.name, run.cfg)
    if state != "done":
        why = {"resume": "unfinished: resume it by rerunning without --report",
               "new": "no config.yaml: not trained by this study"}.get(
                   state, "trained with other settings than these flags")
        say(f"{run.name}: not reported ({why})")
    return state == "done"


def run_study(s: RealStudySettings, say: Say = print) -> dict:
    """Plan, train what is not done, measure, summarise; returns the summary (also
    OUT/summary.json and OUT/report.md)."""
    out = Path(s.out)
    runs = plan(s)
    seen = adaptation_drives(s.camvid, s.heldout)
    say(f"real-study: {len(runs)} runs in {out}; adaptation drives {', '.join(seen)}, held out "
        f"{', '.join(s.heldout)}")
    previous = read_summary(out)
    records: dict[str, dict] = dict(previous.get("runs", {}))
    for i, run in enumerate(runs, start=1):
        say(f"[{i}/{len(runs)}] {run.name}: {run.method.label}")
        if s.report_only and not reportable(run, out, say):
            continue
        seconds = 0.0
        if s.dry_run and run.method.command == "adapt-bn":
            say(f"{run.name}: uda-seg adapt-bn of {run.method.base}_s{run.seed}/best.pt")
            continue
        if not s.report_only:
            seconds = (adapt_bn_run(run, s, out, seen, say) if run.method.command == "adapt-bn"
                       else train_run(run, out, say, s.dry_run))
        if s.dry_run:
            continue
        records[run.name] = run_record(run, out, evaluations(run, s, out, say), seconds,
                                       records.get(run.name))
        write_summary(out, s, seen, records)
    summary = write_summary(out, s, seen, records)
    if s.docs:
        copy_to_docs(out, Path(s.docs), records)
    return summary


def read_summary(out: Path) -> dict:
    path = out / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_summary(out: Path, s: RealStudySettings, seen: list[str], records: dict) -> dict:
    summary = {"camvid": s.camvid, "sim": s.sim, "profile": s.profile,
               "overrides": list(s.overrides), "adaptation_drives": seen,
               "heldout_drives": list(s.heldout), "seeds": list(s.seeds),
               "cpu_seconds_this_session": round(cpu_seconds(), 1),
               "rows": aggregate(records), "runs": records}
    atomic_write_json(out / SUMMARY_FILE, summary)
    atomic_write_text(out / REPORT_FILE, report_markdown(summary))
    return summary


def _cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    if len(stats["values"]) == 1:
        return f"{100 * stats['mean']:.1f}"
    return (f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f} "
            f"({', '.join(f'{100 * v:.1f}' for v in stats['values'])})")


def report_markdown(summary: dict) -> str:
    """The table a reader quotes: mIoU (%) on val and on the held-out drive, per row."""
    held = ", ".join(summary["heldout_drives"])
    rows = []
    for name, row in summary["rows"].items():
        per_it = [r.get("seconds_per_iteration") for r in summary["runs"].values()
                  if r["method"] == name and r.get("seconds_per_iteration")]
        speed = f"{statistics.fmean(per_it):.2f}" if per_it else "-"
        walls = [r["wall_seconds"] / 60 for r in summary["runs"].values()
                 if r["method"] == name and r.get("wall_seconds")]
        wall = "/".join(f"{w:.1f}" for w in walls) or "-"
        rows.append([row["label"], len(row["seeds"]), _cell(row.get("val")),
                     _cell(row.get("heldout")), speed, wall])
    lines = [f"mIoU (%, 11 named classes) on real CamVid; source: simulator "
             f"({summary['sim']}); adaptation drives {', '.join(summary['adaptation_drives'])}; "
             f"held-out drive {held} (train-split labels, never seen by adaptation).", "",
             markdown_table(["row", "seeds", "val (0016E5)", f"held-out ({held})",
                             "s/iteration", "wall min"], rows, align="llllll")]
    lines += ["", "mean ± sample standard deviation (per-seed values) where several seeds ran; "
              "wall min: each seed's run, as measured when it was trained."]
    return "\n".join(lines) + "\n"


def copy_to_docs(out: Path, docs: Path, records: dict) -> None:
    """The small files a repository keeps: summary, report, each run's metrics and config."""
    docs.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY_FILE, REPORT_FILE):
        shutil.copy2(out / name, docs / name)
    for run in records:
        for rel in ("metrics.json", "config.yaml", "eval_val/metrics.json",
                    "eval_heldout/metrics.json"):
            src = out / run / rel
            if src.is_file():
                dst = docs / "runs" / run / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def comparison_figure(camvid: str, columns: Sequence[tuple[str, str]], path: str | Path, *,
                      split: str = "val", n: int = 4, input_size: Sequence[int] = (180, 240),
                      stride: int = 25) -> Path:
    """The paper's Fig. 5 on real frames: image | ground truth | one mask per model, for every
    `stride`-th frame of the split (n rows). `columns` are (title, model file): checkpoints
    and exported .onnx alike, each through the Segmenter a vehicle would run."""
    dataset = build_dataset("auto", camvid, split)
    picks = list(range(0, len(dataset), stride))[:n]
    segmenters = [Segmenter.from_checkpoint(p, device="cpu", input_size=input_size)
                  for _, p in columns]
    rows = []
    for index in picks:
        image, label = dataset.load(index)
        rows.append([image, label, *(s.segment(image) for s in segmenters)])
    return prediction_grid(rows, ["image", "ground truth", *(t for t, _ in columns)], path,
                           row_names=[dataset.names[i] for i in picks], panel_inches=2.2)
