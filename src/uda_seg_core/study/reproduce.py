"""`uda-seg reproduce`: every experiment of the paper's Tables I-IV, the pruning sweeps, the report.

    uda-seg reproduce --out runs/reproduce           # the reduced profile (make reproduce)
    uda-seg reproduce --out runs/paper --profile paper \\
        --source-root data/IDDA --target-root data/CamVid --device cuda
    uda-seg reproduce --out runs/reproduce --only table1_fcd table2_dropout --dry-run

Each experiment is a file of config/experiments/ (the paper's settings, differences from
the defaults only); the `reduced` profile lays config/experiments/reduced.yaml over each
(ResNet-18, small crops, few epochs on the synthetic default: the whole study in under an
hour on a 2-core CPU), the `paper` profile uses them as they are (ResNet-101, 720x960
crops, 100 epochs: real data and a GPU). Rows whose resolved configs coincide are trained
once. Every run goes to OUT/<experiment> through `uda-seg train|adapt` in a subprocess
(its own memory, its own failure); the resolved config is written to OUT/configs/ first.

Resumable: a run whose OUT/<name>/config.yaml matches and whose metrics.json holds the
final test result is skipped; one stopped half-way continues from its last.pt (`--resume`);
one whose settings changed starts again. Then the post-training pruning sweep of the
"optimised" model (BiSeNet+FCD with incremental pruning, as in the paper) and
`uda-seg report` (OUT/report.md). OUT/plan.json records what ran, how, and how long.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from uda_seg_core.config import (
    Config,
    ConfigError,
    DataConfig,
    dump_config,
    load_config,
    merge,
    parse_override,
    to_dict,
)
from uda_seg_core.optimize.sweep import sweep_checkpoint
from uda_seg_core.reporting import atomic_write_json
from uda_seg_core.stages import Stages
from uda_seg_core.study.experiments import (
    EXPERIMENTS,
    PLAN_FILE,
    PTP_EXPERIMENT,
    SWEEP_DIR,
    Experiment,
)
from uda_seg_core.study.report import write_report

PROFILES = ("reduced", "paper")
PROFILE_FILES = {"reduced": "reduced.yaml"}
Say = Callable[[str], None]  # where progress lines go (the command prints them)


@dataclass
class ReproduceSettings:
    """One `uda-seg reproduce` (the flags, as plain data)."""

    out: str = "runs/reproduce"
    profile: str = "reduced"  # reduced (synthetic, CPU, < 1 h) | paper (real data, GPU)
    only: Sequence[str] | None = None  # experiment names; None = all
    source_root: str | None = None  # labelled source dataset for the adaptation rows
    target_root: str | None = None  # target dataset for every row
    device: str | None = None  # train.device for every run
    overrides: Sequence[str] = field(default_factory=list)  # dotted KEY=VALUE for every run
    experiments: Path | None = None  # folder of experiment YAMLs
    skip_sweep: bool = False
    skip_report: bool = False
    dry_run: bool = False  # plan and print the commands, run nothing


def experiments_dir() -> Path:
    """config/experiments of this checkout (or of the installed share/ folder)."""
    candidates = [Path.cwd() / "config" / "experiments",
                  Path(__file__).resolve().parents[3] / "config" / "experiments",
                  Path(sys.prefix) / "share" / "uda_seg_ros" / "config" / "experiments"]
    for path in candidates:
        if (path / f"{EXPERIMENTS[0].name}.yaml").is_file():
            return path
    raise ConfigError(f"config/experiments not found (looked in "
                      f"{', '.join(str(p) for p in candidates)}); pass --experiments DIR")


def same_domain(data: DataConfig) -> bool:
    """Supervised on the target's own labels (the upper bound, Tables III-IV)."""
    return (data.source_format, data.source_root) == (data.target_format, data.target_root)


def as_run_records(cfg: Config, saved: Config) -> dict:
    """`cfg` as a run directory's config.yaml would record it: a run reads 'auto' formats
    off the folders and writes the format it found, so 'auto' matches what was recorded."""
    data = to_dict(cfg)
    for key in ("source_format", "target_format"):
        if data["data"][key] == "auto":
            data["data"][key] = getattr(saved.data, key)
    return data


def resolve_config(name: str, profile: str, folder: Path, out: Path, overrides: list[str] = (),
                   source_root: str | None = None, target_root: str | None = None,
                   device: str | None = None) -> Config:
    """Defaults <- experiment file <- profile file <- data roots <- --set overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}'; choose from {', '.join(PROFILES)}")
    cfg = load_config(folder / f"{name}.yaml")
    if profile in PROFILE_FILES:
        path = folder / PROFILE_FILES[profile]
        try:
            merge(cfg, yaml.safe_load(path.read_text()) or {})
        except FileNotFoundError:
            raise ConfigError(f"profile file not found: {path}") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    supervised_on_target = same_domain(cfg.data)
    if target_root:
        cfg.data.target_root = target_root
        if supervised_on_target:
            cfg.data.source_root = target_root
    if source_root and not supervised_on_target:
        cfg.data.source_root = source_root
    if device:
        cfg.train.device = device
    for text in overrides:
        merge(cfg, parse_override(text))
    cfg.train.out_dir = str(out)
    cfg.train.run_name = name
    return cfg


def config_key(command: str, cfg: Config) -> str:
    """Two experiments with the same key are the same training run."""
    data = to_dict(cfg)
    data["train"]["run_name"] = ""
    return json.dumps([command, data], sort_keys=True)


def run_state(run_dir: Path, cfg: Config) -> str:
    """'done', 'resume' (same settings, stopped early), 'changed' or 'new'."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return "new"
    try:
        recorded = load_config(saved)
        same = to_dict(recorded) == as_run_records(cfg, recorded)
    except ConfigError:
        same = False
    if not same:
        return "changed"
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        doc = json.loads(metrics.read_text())
        if doc.get("test") and doc.get("iteration") == doc.get("max_iters"):
            return "done"
    return "resume" if (run_dir / "last.pt").is_file() else "changed"


def train_command(exp: Experiment, config_path: Path, run_dir: Path, state: str) -> list[str]:
    base = [sys.executable, "-m", "uda_seg_core.cli", exp.command]
    if state == "resume":
        return [*base, "--resume", str(run_dir)]
    return [*base, "--config", str(config_path), *(["--overwrite"] if state == "changed" else [])]


def ensure_data(cfgs: list[Config], synthetic_out: Path | None = None,
                say: Say = print) -> None:
    """Generate the synthetic default if a run needs it and it is missing; any other
    missing dataset folder is an error that names it."""
    default = DataConfig()
    synthetic = Path(default.source_root).parent if synthetic_out is None else synthetic_out
    needed = {Path(r) for c in cfgs for r in (c.data.source_root, c.data.target_root)}
    missing = sorted(p for p in needed if not p.is_dir())
    if not missing:
        return
    if all(p.parent == synthetic for p in missing):
        say(f"reproduce: generating the synthetic default in {synthetic} (uda-seg make-synthetic)")
        subprocess.run([sys.executable, "-m", "uda_seg_core.cli", "make-synthetic", "--out",
                        str(synthetic)],
                       check=True)
        return
    raise ConfigError(f"dataset folder(s) not found: {', '.join(str(p) for p in missing)}; pass "
                      f"--source-root / --target-root (IDDA / CamVid) or generate the synthetic "
                      f"default with `uda-seg make-synthetic --out {synthetic}`")


def cpu_seconds() -> float:
    """User + system CPU time of this process and of the finished subprocesses: on a
    shared machine the honest measure of the work, where wall time also counts waiting."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def run_sweep_for(out: Path, plan: dict, device: str, say: Say = print) -> dict:
    """The PTP sweep (module groups and global) of the optimised model on the target test
    split: a stage, skipped while its checkpoint and settings are those it ran on."""
    entry = plan["experiments"].get(PTP_EXPERIMENT)
    if entry is None:
        return {"status": "skipped", "reason": f"{PTP_EXPERIMENT} not in this reproduction"}
    run_dir = out / entry["run"]
    best = run_dir / "best.pt"
    if not best.is_file():
        return {"status": "skipped", "reason": f"{best} not found (the run did not finish)"}
    sweep_dir = run_dir / SWEEP_DIR
    cfg = load_config(run_dir / "config.yaml")
    params = {"checkpoint": str(best), "written": best.stat().st_mtime_ns, "device": device,
              "sparsities": list(cfg.optimise.sparsities)}
    start = time.perf_counter()

    def sweep() -> None:
        say(f"reproduce: post-training pruning sweep of {best}")
        sweep_checkpoint(best, cfg.data.target_root, cfg.data.target_format, cfg.data.test_split,
                         sparsities=list(cfg.optimise.sparsities), out=sweep_dir,
                         limit=cfg.data.limit, device=device)

    ran = Stages(out, chained=False).run("sweep", params, [sweep_dir / "sweep.json"], sweep)
    return {"status": "ran" if ran else "done", "dir": str(sweep_dir),
            "seconds": time.perf_counter() - start if ran else 0.0}


def plan_runs(args: ReproduceSettings) -> tuple[dict, list[tuple[Experiment, Config, Path, str]]]:
    """The plan document and the runs to launch: (experiment, config, config file, state)."""
    folder = args.experiments or experiments_dir()
    out = Path(args.out)
    chosen = EXPERIMENTS
    if args.only:
        known = {e.name for e in EXPERIMENTS}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(sorted(known))}")
        chosen = tuple(e for e in EXPERIMENTS if e.name in args.only)
    plan: dict = {"profile": args.profile, "experiments_dir": str(folder),
                  "overrides": list(args.overrides),
                  "experiments": {}}
    runs: list[tuple[Experiment, Config, Path, str]] = []
    first_of: dict[str, str] = {}
    for exp in chosen:
        cfg = resolve_config(exp.name, args.profile, folder, out, list(args.overrides),
                             args.source_root,
                             args.target_root, args.device)
        key = config_key(exp.command, cfg)
        if key in first_of:  # same training run as an earlier row
            plan["experiments"][exp.name] = {"command": exp.command, "run": first_of[key],
                                             "same_as": first_of[key]}
            continue
        first_of[key] = exp.name
        config_path = out / "configs" / f"{exp.name}.yaml"
        state = run_state(out / exp.name, cfg)
        plan["experiments"][exp.name] = {"command": exp.command, "run": exp.name,
                                         "config": str(config_path),
                                         "state": state}
        runs.append((exp, cfg, config_path, state))
    return plan, runs


def write_plan(out: Path, plan: dict) -> None:
    atomic_write_json(out / PLAN_FILE, plan)


def train_runs(runs: list, out: Path, plan: dict, dry_run: bool, say: Say) -> list[str]:
    """Launch every planned training run not done yet (each in its own process); returns
    the names of those that failed."""
    failures = []
    for i, (exp, cfg, config_path, state) in enumerate(runs, start=1):
        entry = plan["experiments"][exp.name]
        cmd = train_command(exp, config_path, out / exp.name, state)
        if dry_run:
            say(f"[{i}/{len(runs)}] {exp.name} ({state}): {' '.join(cmd)}")
            continue
        if state == "done":
            say(f"[{i}/{len(runs)}] {exp.name}: finished earlier, skipped")
            entry["seconds"] = 0.0
            continue
        config_path.parent.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, config_path)
        say(f"[{i}/{len(runs)}] {exp.name} ({state}): {' '.join(cmd[1:])}")
        t0 = time.perf_counter()
        code = subprocess.run(cmd, check=False).returncode
        entry["seconds"] = time.perf_counter() - t0
        entry["state"] = "done" if code == 0 else f"failed (exit status {code})"
        if code != 0:
            failures.append(exp.name)
        write_plan(out, plan)
    return failures


def reproduce(s: ReproduceSettings, say: Say = print) -> tuple[dict, list[str]]:
    """The whole study: plan, train what is not done, sweep, report. Returns the plan (also
    OUT/plan.json) and the names of the failed runs. Raises ConfigError for a bad request
    and CalledProcessError when the synthetic data cannot be generated."""
    start = time.perf_counter()
    out = Path(s.out)
    plan, runs = plan_runs(s)
    if not s.dry_run:
        ensure_data([cfg for _, cfg, _, state in runs if state != "done"], say=say)
    reused = sum(1 for e in plan["experiments"].values() if "same_as" in e)
    done = sum(1 for r in runs if r[3] == "done")
    say(f"reproduce ({s.profile} profile): {len(plan['experiments'])} experiments, {len(runs)} "
        f"training runs ({reused} rows share another row's run), {done} already finished")
    failures = train_runs(runs, out, plan, s.dry_run, say)
    if s.dry_run:
        return plan, failures
    plan["training_seconds"] = time.perf_counter() - start
    if not s.skip_sweep:
        plan["sweep"] = run_sweep_for(out, plan, s.device or "auto", say)
    write_plan(out, plan)
    if not s.skip_report:
        plan["seconds_before_report"] = time.perf_counter() - start
        plan["cpu_seconds_before_report"] = cpu_seconds()
        write_plan(out, plan)
        say(f"reproduce: report {write_report(out, out / 'report.md', device=s.device or 'auto')}")
    plan["total_seconds"] = time.perf_counter() - start
    plan["cpu_seconds"] = cpu_seconds()
    write_plan(out, plan)
    say(f"reproduce: {len(runs)} training runs, {'sweep, ' if not s.skip_sweep else ''}report in "
        f"{_duration(plan['total_seconds'])} (wall clock), {_duration(plan['cpu_seconds'])} of CPU "
        f"time")
    return plan, failures
