"""`uda-seg real-study`: does adaptation help on real frames? Two domain pairs, each in its own
folder (rows and layouts: study/real_rows.py; figures and report: study/real_report.py).

    uda-seg real-study --camvid ../shared/data/CamVid-SegNet --sim data/sim_real/idda \\
        --out runs/real_study                          # sim-real: every row, 3 seeds
    uda-seg real-study --pair day-dusk --camvid ../shared/data/CamVid-SegNet \\
        --out runs/day_dusk                            # CamVid day -> dusk, no simulator
    uda-seg real-study ... --only source_only fcd      # some rows; a rerun resumes the rest
    uda-seg real-study ... --report --docs docs/real_study   # tables, JSON and figures only

Rows (one run per seed; the first seed only where marked):

| row | what trains | pairs |
|---|---|---|
| upper_bound | BiSeNet on CamVid's train labels, every drive (first seed) | sim-real |
| upper_bound_seen | the same, adaptation drives' labels only (optional, first seed) | sim-real |
| upper_bound_dusk | daytime labels + the dusk adaptation frames' labels (first seed) | day-dusk |
| source_only | BiSeNet on the source's labels (simulator / daytime CamVid) | both |
| adapt_bn | source_only's network, BatchNorm statistics re-estimated on target frames | both |
| control | adaptation stage with FCD and lambda_adv = 0 (target frames pass, no L_adv) | both |
| fcd | adaptation stage, adversarial with FCD | both |
| tfd / dwd | the same with TFD / DWD (first seed) | sim-real |
| fcd_lambda0.01 | FCD with a 10x stronger adversarial term (optional, first seed) | sim-real |
| minent | adaptation stage, ADVENT's MinEnt, no D | both |
| st1 | adaptation stage, self-training on source_only's class-balanced pseudo-labels, no D | both |
| st2 | the same from st1 (its pseudo-labels; optional) | both |
| fcd_st | FCD + self-training on source_only's pseudo-labels | both |
| st_bn | self-training taught by adapt_bn's network, joint BatchNorm | both |
| st_bn_separate | st_bn, each domain through BatchNorm on its own (optional) | both |
| fcd_st_bn | FCD + st_bn | both |

Every run uses the same profile (config/real_cpu.yaml unless told otherwise) and is a
`uda-seg train | adapt | adapt-bn` in its own process. Model selection uses CamVid's val
split (0016E5, daytime); each selected network is measured on val and on the pair's target
evaluation: for sim-real the held-out drive (0006R0) that no adaptation saw, for day-dusk the
second half of the dusk drive (`0001TP:2/2`), whose frames no training, pseudo-labelling,
BatchNorm re-estimation or selection reads. Metrics at the label's resolution, 11 named
classes. For rows with a discriminator the study also records D's per-domain accuracy (the
run's metrics history) and the adversarial / segmentation gradient ratio on its last.pt
(`study/gradients.py`); day-dusk draws Fig. 5 on dusk evaluation frames (image, ground truth,
source only, FCD, the best other row).

Resumable: a finished run is skipped, a stopped one continues from its last.pt, one whose
settings changed starts again; evaluations and measurements are stages redone only when
their checkpoint changed. OUT/summary.json holds every figure; `--docs DIR` copies the small
JSON files (no checkpoints), the report and the figure to DIR, for the repository. A folder
holds one pair: a study of the other pair there is refused.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_core.config import Config, ConfigError, dump_config, load_config
from uda_seg_core.data import build_dataset
from uda_seg_core.evaluate import evaluate_checkpoint
from uda_seg_core.inference import Segmenter
from uda_seg_core.reporting import atomic_write_json, atomic_write_text, prediction_grid
from uda_seg_core.stages import Stages
from uda_seg_core.study.gradients import GRADIENT_FILE, measure_adversarial_gradient
from uda_seg_core.study.real_report import (
    REFERENCE,
    aggregate,
    discriminator_accuracy,
    report_markdown,
)
from uda_seg_core.study.real_rows import (
    ADAPTATION_STAGE,
    PAIRS,
    Layout,
    Method,
    Pair,
    chosen_methods,
    day_dusk_layout,
    row_data,
    sim_real_layout,
)
from uda_seg_core.study.reproduce import cpu_seconds, run_state
from uda_seg_core.train.batchnorm import adapt_batchnorm

__all__ = ["ADAPTATION_STAGE", "PAIRS", "Method", "PlannedRun", "RealStudySettings",
           "comparison_figure", "plan", "run_study"]

Say = Callable[[str], None]
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"
DUSK_FIGURE = "fig5_dusk.png"


@dataclass
class RealStudySettings:
    """One `uda-seg real-study` (the flags, as plain data)."""

    camvid: str  # real CamVid (any layout, read off the folder)
    sim: str = ""  # sim-real's labelled source: the simulator's IDDA-format output
    pair: str = "sim-real"  # sim-real | day-dusk
    out: str = ""  # '' = the pair's own folder (runs/real_study, runs/day_dusk)
    profile: str = "config/real_cpu.yaml"
    seeds: Sequence[int] = (0, 1, 2)
    heldout: Sequence[str] = ("0006R0",)  # sim-real: train-split drives no adaptation sees
    dusk: str = "0001TP"  # day-dusk: the dusk drive (first half adapts, second evaluates)
    only: Sequence[str] | None = None  # row names; None = every non-optional row
    overrides: Sequence[str] = field(default_factory=list)  # KEY=VALUE for every run
    adaptation: Sequence[str] = ADAPTATION_STAGE  # KEY=VALUE for the adaptation rows
    bn_batches: int = 40
    grad_batches: int = 8  # batches of the gradient measurement per D row (0: none)
    dry_run: bool = False
    report_only: bool = False
    docs: str | None = None  # copy JSON + report here

    @property
    def study(self) -> Pair:
        if self.pair not in PAIRS:
            raise ConfigError(f"unknown pair {self.pair!r}; choose from {', '.join(PAIRS)}")
        return PAIRS[self.pair]

    @property
    def out_dir(self) -> Path:
        return Path(self.out or self.study.default_out)


@dataclass
class PlannedRun:
    name: str  # e.g. fcd_s1
    method: Method
    seed: int
    cfg: Config | None  # None for adapt-bn


def layout(s: RealStudySettings) -> Layout:
    if s.study.name == "day-dusk":
        return day_dusk_layout(s.camvid, s.dusk)
    return sim_real_layout(s.camvid, s.sim, s.heldout)


def run_config(s: RealStudySettings, method: Method, seed: int, name: str,
               where: Layout) -> Config:
    """The profile, the row's data, the seed, --set, the adaptation stage (its rows), and
    last the row's own method settings (nothing after them can change what the row is)."""
    run = [f"train.seed={seed}", f"train.out_dir={s.out_dir}", f"train.run_name={name}"]
    stage = []  # after --set: the adaptation stage's own settings win for its rows
    if method.base:
        stage = [*s.adaptation,
                 f"train.init_from={s.out_dir / f'{method.base}_s{seed}' / 'best.pt'}"]
    if method.teacher:
        stage.append(f"adapt.teacher={s.out_dir / f'{method.teacher}_s{seed}' / 'best.pt'}")
    return load_config(s.profile, [*row_data(method, where, s.camvid), *run, *s.overrides,
                                   *stage, *method.overrides])


def plan(s: RealStudySettings) -> list[PlannedRun]:
    where = layout(s)
    if not s.seeds:
        raise ConfigError("--seeds: give at least one seed")
    runs = []
    for method in chosen_methods(s.study, s.only):
        for seed in (s.seeds if method.all_seeds else s.seeds[:1]):
            name = f"{method.name}_s{seed}"
            cfg = (None if method.command == "adapt-bn"
                   else run_config(s, method, seed, name, where))
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


def adapt_bn_run(run: PlannedRun, s: RealStudySettings, out: Path, frames: Sequence[str],
                 say: Say) -> float:
    """BatchNorm re-estimation of the base row's selected network (same seed) on the
    adaptation frames `frames` (sequence specs): a stage."""
    base = out / f"{run.method.base}_s{run.seed}" / "best.pt"
    if not base.is_file():
        raise RuntimeError(f"{run.name}: {base} not found; run the {run.method.base} row first")
    target = out / run.name / "best.pt"
    params = {"checkpoint": str(base), "written": base.stat().st_mtime_ns,
              "drives": list(frames), "batches": s.bn_batches, "seed": run.seed}
    start = time.perf_counter()

    def action() -> None:
        say(f"{run.name}: uda-seg adapt-bn --checkpoint {base} --data {s.camvid} --sequences "
            f"{' '.join(frames)} --batches {s.bn_batches} --seed {run.seed} --out {target}")
        adapt_batchnorm(base, s.camvid, target, batches=s.bn_batches, sequences=list(frames),
                        seed=run.seed)

    ran = Stages(out, chained=False).run(run.name, params, [target], action, say=say)
    # a reused stage measured nothing: 0 keeps the wall time its first run recorded (bug
    # guarded: st_bn, which plans adapt_bn as its teacher, overwrote it with 0.0 s)
    return time.perf_counter() - start if ran else 0.0


def evaluations(run: PlannedRun, s: RealStudySettings, out: Path, where: Layout,
                say: Say) -> dict:
    """The pair's figures of the run's selected network (each an evaluation stage)."""
    best = out / run.name / "best.pt"
    result = {}
    for e in where.evaluations:
        folder = out / run.name / f"eval_{e.key}"
        params = {"checkpoint": str(best), "written": best.stat().st_mtime_ns, "split": e.split,
                  "sequences": list(e.sequences)}

        def action(split=e.split, sequences=e.sequences, folder=folder) -> None:
            say(f"{run.name}: uda-seg evaluate --checkpoint {best} --data {s.camvid} --split "
                f"{split}{' --sequences ' + ' '.join(sequences) if sequences else ''}")
            evaluate_checkpoint(best, s.camvid, split=split, sequences=sequences, out=folder,
                                progress=False)

        Stages(out, chained=False).run(f"{run.name}_eval_{e.key}", params,
                                       [folder / "metrics.json"], action, say=say)
        result[e.key] = json.loads((folder / "metrics.json").read_text())
    return result


def has_discriminator(run: PlannedRun) -> bool:
    return (run.method.command == "adapt" and run.cfg is not None
            and run.cfg.adapt.discriminator != "none")


def gradient_measurement(run: PlannedRun, s: RealStudySettings, out: Path,
                         say: Say) -> dict | None:
    """lambda_adv |grad L_adv| / |grad L_seg| on the run's last.pt (a stage); None for rows
    without a discriminator or with --grad-batches 0."""
    last = out / run.name / "last.pt"
    if not has_discriminator(run) or s.grad_batches <= 0 or not last.is_file():
        return None
    path = out / run.name / GRADIENT_FILE
    params = {"checkpoint": str(last), "written": last.stat().st_mtime_ns,
              "batches": s.grad_batches}

    def action() -> None:
        say(f"{run.name}: adversarial / segmentation gradient on {last} ({s.grad_batches} "
            f"batches)")
        atomic_write_json(path, measure_adversarial_gradient(out / run.name, s.grad_batches))

    Stages(out, chained=False).run(f"{run.name}_gradient", params, [path], action, say=say)
    return json.loads(path.read_text())


def run_record(run: PlannedRun, out: Path, figures: dict, seconds: float,
               earlier: dict | None = None, gradient: dict | None = None) -> dict:
    """What the summary keeps of one run (small: no per-pixel data). `seconds` = 0 (the run
    was not trained by this invocation: skipped, or `--report`) keeps the wall time the
    `earlier` record measured."""
    keep = ("miou", "miou_12", "accuracy", "per_class_iou", "images", "split", "sequences")
    record = {"method": run.method.name, "seed": run.seed, "command": run.method.command,
              **{k: {f: v[f] for f in keep if f in v} for k, v in figures.items()}}
    metrics = out / run.name / "metrics.json"
    if metrics.is_file():
        doc = json.loads(metrics.read_text())
        record.update(iterations=doc.get("max_iters"),
                      seconds_per_iteration=doc.get("seconds_per_iteration"),
                      best_iteration=(doc.get("best") or {}).get("iteration"))
        d_acc = discriminator_accuracy(doc) if has_discriminator(run) else None
        if d_acc:
            record["discriminator"] = d_acc
    if gradient:
        record["gradient"] = {k: v for k, v in gradient.items() if k != "run"}
    if seconds:
        record["wall_seconds"] = round(seconds, 3)
    elif (earlier or {}).get("wall_seconds"):
        record["wall_seconds"] = earlier["wall_seconds"]
    return record


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


def read_summary(out: Path) -> dict:
    path = out / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def check_pair(previous: dict, s: RealStudySettings, out: Path) -> None:
    """One folder, one pair: records of the other pair would be mixed into this one's rows
    (source_only of the simulator compared with daytime FCD). A summary written before
    pairs existed is sim-real's."""
    if previous and previous.get("pair", "sim-real") != s.study.name:
        raise ConfigError(f"{out} holds the {previous.get('pair', 'sim-real')} study; write "
                          f"the {s.study.name} pair to its own --out")


def run_study(s: RealStudySettings, say: Say = print) -> dict:
    """Plan, train what is not done, measure, summarise; returns the summary (also
    OUT/summary.json and OUT/report.md)."""
    out = s.out_dir
    previous = read_summary(out)
    check_pair(previous, s, out)
    runs = plan(s)
    where = layout(s)
    say(f"real-study {s.study.name}: {len(runs)} runs in {out}; {where.description}")
    records: dict[str, dict] = dict(previous.get("runs", {}))
    for i, run in enumerate(runs, start=1):
        say(f"[{i}/{len(runs)}] {run.name}: {run.method.label}")
        if s.report_only and not reportable(run, out, say):
            continue
        seconds = 0.0
        if s.dry_run and run.method.command == "adapt-bn":
            say(f"{run.name}: uda-seg adapt-bn of {run.method.base}_s{run.seed}/best.pt on "
                f"{' '.join(where.adaptation)}")
            continue
        if not s.report_only:
            seconds = (adapt_bn_run(run, s, out, where.adaptation, say)
                       if run.method.command == "adapt-bn" else
                       train_run(run, out, say, s.dry_run))
        if s.dry_run:
            continue
        records[run.name] = run_record(run, out, evaluations(run, s, out, where, say), seconds,
                                       records.get(run.name),
                                       gradient_measurement(run, s, out, say))
        write_summary(out, s, where, records)
    if s.dry_run:
        return {}
    summary = write_summary(out, s, where, records)
    if s.study.name == "day-dusk":
        figure = dusk_figure(s, out, where, summary, say, previous.get("figure"))
        if figure:
            summary = write_summary(out, s, where, records, figure=figure)
    if s.docs:
        copy_to_docs(out, Path(s.docs), records, summary)
    return summary


def write_summary(out: Path, s: RealStudySettings, where: Layout, records: dict,
                  figure: dict | None = None) -> dict:
    pair = s.study
    keys = [e.key for e in where.evaluations]
    mine = {name: r for name, r in records.items() if r["method"] in {m.name for m in pair.rows}}
    summary = {"pair": pair.name, "camvid": s.camvid, "sim": s.sim, "profile": s.profile,
               "overrides": list(s.overrides), "adaptation_stage": list(s.adaptation),
               "description": where.description, "source_root": where.source_root,
               "source_sequences": list(where.source_sequences),
               "adaptation_sequences": list(where.adaptation),
               "evaluations": [{"key": e.key, "split": e.split, "sequences": list(e.sequences),
                                "title": e.title} for e in where.evaluations],
               "target_evaluation": pair.target_key, "upper_bound": pair.upper_bound,
               "val_side": pair.val_side,
               "seeds": list(s.seeds), "cpu_seconds_this_session": round(cpu_seconds(), 1)}
    if pair.name == "sim-real":
        summary.update(adaptation_drives=list(where.adaptation), heldout_drives=list(s.heldout))
    else:
        summary["dusk_drive"] = s.dusk
    summary["rows"] = aggregate(mine, pair.rows, keys, pair.target_key, pair.upper_bound)
    summary["runs"] = mine
    if figure:
        summary["figure"] = figure
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SUMMARY_FILE, summary)
    atomic_write_text(out / REPORT_FILE, report_markdown(summary))
    return summary


def copy_to_docs(out: Path, docs: Path, records: dict, summary: dict | None = None) -> None:
    """The small files a repository keeps: summary, report, figure, each run's metrics,
    config and measurements."""
    docs.mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY_FILE, REPORT_FILE, (summary or {}).get("figure", {}).get("file")):
        if name and (out / name).is_file():
            shutil.copy2(out / name, docs / name)
    for run in records:
        for rel in ("metrics.json", "config.yaml", "eval_val/metrics.json",
                    "eval_heldout/metrics.json", "eval_dusk/metrics.json", GRADIENT_FILE):
            src = out / run / rel
            if src.is_file():
                dst = docs / "runs" / run / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def comparison_figure(camvid: str, columns: Sequence[tuple[str, str]], path: str | Path, *,
                      split: str = "val", sequences: Sequence[str] = (), n: int = 4,
                      input_size: Sequence[int] = (180, 240), stride: int | None = 25) -> Path:
    """The paper's Fig. 5 on real frames: image | ground truth | one mask per model, for every
    `stride`-th frame of the split (of its `sequences`, when given; stride None: n frames
    spread evenly), n rows. `columns` are (title, model file): checkpoints and exported .onnx
    alike, each through the Segmenter a vehicle would run."""
    dataset = build_dataset("auto", camvid, split, sequences=sequences)
    if not len(dataset):
        raise ConfigError(f"no frame of {camvid}'s {split} split{' in ' if sequences else ''}"
                          f"{' '.join(sequences)} to draw")
    if stride is None:
        count = min(n, len(dataset))
        picks = sorted({round(i * (len(dataset) - 1) / max(1, count - 1)) for i in range(count)})
    else:
        picks = list(range(0, len(dataset), stride))[:n]
    segmenters = [Segmenter.from_checkpoint(p, device="cpu", input_size=input_size)
                  for _, p in columns]
    rows = []
    for index in picks:
        image, label = dataset.load(index)
        rows.append([image, label, *(s.segment(image) for s in segmenters)])
    return prediction_grid(rows, ["image", "ground truth", *(t for t, _ in columns)], path,
                           row_names=[dataset.names[i] for i in picks], panel_inches=2.2)


def dusk_figure(s: RealStudySettings, out: Path, where: Layout, summary: dict,
                say: Say, earlier: dict | None = None) -> dict | None:
    """Fig. 5 on the dusk evaluation frames: image, ground truth, source only, FCD and the
    best other adaptation row (highest mean dusk mIoU; not an upper bound), the first seed
    that has all of them. Where no seed has them all (their checkpoints are gone: a new
    checkout holds the summary, not the networks), the `earlier` figure is kept if it
    shows the same rows and its file is in OUT. None when source only and one adapted row
    are not there yet."""
    rows = summary["rows"]
    key = s.study.target_key
    candidates = [n for n, row in rows.items() if key in row and n != REFERENCE
                  and not s.study.row(n).labelled_target]
    if not candidates or REFERENCE not in rows:
        return None
    best = max(candidates, key=lambda n: rows[n][key]["mean"])
    names = list(dict.fromkeys([REFERENCE, *(["fcd"] if "fcd" in rows else []), best]))
    for seed in s.seeds:
        files = [out / f"{n}_s{seed}" / "best.pt" for n in names]
        if all(f.is_file() for f in files):
            break
    else:
        if earlier and earlier.get("rows") == names and (out / earlier["file"]).is_file():
            say(f"figure: {earlier['file']} kept (seed {earlier['seed']}): no seed has the "
                f"checkpoints of {', '.join(names)} to redraw it")
            return earlier
        return None
    evaluation = next(e for e in where.evaluations if e.key == key)
    titles = ["source only" if n == REFERENCE else "FCD" if n == "fcd" else f"best: {n}"
              for n in names]
    frames = " ".join(evaluation.sequences)
    say(f"figure: {DUSK_FIGURE} ({', '.join(titles)}, seed {seed}) on {frames}")
    comparison_figure(s.camvid, [(t, str(f)) for t, f in zip(titles, files)], out / DUSK_FIGURE,
                      split=evaluation.split, sequences=evaluation.sequences, stride=None,
                      input_size=(360, 480))
    return {"file": DUSK_FIGURE, "rows": names, "seed": seed,
            "frames": list(evaluation.sequences),
            "caption": (f"Fig. 5 on {frames} (dusk evaluation frames): image, ground truth, "
                        f"{', '.join(titles)}; seed {seed}")}
