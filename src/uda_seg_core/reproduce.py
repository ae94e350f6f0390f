"""`uda-seg reproduce`: every experiment of the paper's Tables I-IV, the pruning sweeps, the report.

    uda-seg reproduce --out runs/reproduce                      # the reduced profile (make reproduce)
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
import subprocess
import sys
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Experiment:
    name: str  # config/experiments/<name>.yaml and the run directory OUT/<name>
    command: str  # train | adapt


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table1_upper_bound", "train"),
    Experiment("table1_fcd", "adapt"),
    Experiment("table1_tfd", "adapt"),
    Experiment("table1_dwd", "adapt"),
    Experiment("table2_fixed_pruning", "adapt"),
    Experiment("table2_incremental_pruning", "adapt"),
    Experiment("table2_dropout", "adapt"),
    Experiment("table2_incremental_pruning_dropout", "adapt"),
    Experiment("table3_baseline", "train"),
    Experiment("table3_aug1", "train"),
    Experiment("table3_aug2", "train"),
    Experiment("table3_aug3", "train"),
    Experiment("table3_aug4", "train"),
    Experiment("table3_aug5", "train"),
    Experiment("table4_sgd", "train"),
    Experiment("table4_rmsprop", "train"),
    Experiment("table4_adam", "train"),
    Experiment("source_only", "train"),
)
PROFILES = ("reduced", "paper")
PROFILE_FILES = {"reduced": "reduced.yaml"}
# The paper prunes its "optimised model" after training: BiSeNet+FCD with incremental DTP.
PTP_EXPERIMENT = "table2_incremental_pruning"
PLAN_FILE = "plan.json"
SWEEP_DIR = "prune_sweep_test"


def experiments_dir() -> Path:
    """config/experiments of this checkout (or of the installed share/ folder)."""
    candidates = [Path.cwd() / "config" / "experiments",
                  Path(__file__).resolve().parents[2] / "config" / "experiments",
                  Path(sys.prefix) / "share" / "uda_seg_ros" / "config" / "experiments"]
    for path in candidates:
        if (path / f"{EXPERIMENTS[0].name}.yaml").is_file():
            return path
    raise ConfigError(f"config/experiments not found (looked in {', '.join(str(p) for p in candidates)}); "
                      f"pass --experiments DIR")


def same_domain(data: DataConfig) -> bool:
    """Supervised on the target's own labels (the upper bound, Tables III-IV)."""
    return (data.source_format, data.source_root) == (data.target_format, data.target_root)


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
        same = to_dict(load_config(saved)) == to_dict(cfg)
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


def ensure_data(cfgs: list[Config], synthetic_out: Path | None = None) -> None:
    """Generate the synthetic default if a run needs it and it is missing; any other
    missing dataset folder is an error that names it."""
    default = DataConfig()
    synthetic = Path(default.source_root).parent if synthetic_out is None else synthetic_out
    needed = {Path(r) for c in cfgs for r in (c.data.source_root, c.data.target_root)}
    missing = sorted(p for p in needed if not p.is_dir())
    if not missing:
        return
    if all(p.parent == synthetic for p in missing):
        print(f"reproduce: generating the synthetic default in {synthetic} (uda-seg make-synthetic)", flush=True)
        subprocess.run([sys.executable, "-m", "uda_seg_core.cli", "make-synthetic", "--out", str(synthetic)],
                       check=True)
        return
    raise ConfigError(f"dataset folder(s) not found: {', '.join(str(p) for p in missing)}; pass "
                      f"--source-root / --target-root (IDDA / CamVid) or generate the synthetic default "
                      f"with `uda-seg make-synthetic --out {synthetic}`")


def cpu_seconds() -> float:
    """User + system CPU time of this process and of the finished subprocesses: on a
    shared machine the honest measure of the work, where wall time also counts waiting."""
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def run_sweep_for(out: Path, plan: dict, device: str) -> dict:
    """The PTP sweep (module groups and global) of the optimised model on the target test
    split; skipped when its sweep.json is newer than the checkpoint."""
    from uda_seg_core.optimize.sweep import sweep_checkpoint

    entry = plan["experiments"].get(PTP_EXPERIMENT)
    if entry is None:
        return {"status": "skipped", "reason": f"{PTP_EXPERIMENT} not in this reproduction"}
    run_dir = out / entry["run"]
    best = run_dir / "best.pt"
    if not best.is_file():
        return {"status": "skipped", "reason": f"{best} not found (the run did not finish)"}
    sweep_dir = run_dir / SWEEP_DIR
    if (sweep_dir / "sweep.json").is_file() and (sweep_dir / "sweep.json").stat().st_mtime > best.stat().st_mtime:
        return {"status": "done", "dir": str(sweep_dir), "seconds": 0.0}
    cfg = load_config(run_dir / "config.yaml")
    start = time.perf_counter()
    print(f"reproduce: post-training pruning sweep of {best}", flush=True)
    sweep_checkpoint(best, cfg.data.target_root, cfg.data.target_format, cfg.data.test_split,
                     sparsities=list(cfg.optimise.sparsities), out=sweep_dir, limit=cfg.data.limit,
                     device=device)
    return {"status": "ran", "dir": str(sweep_dir), "seconds": time.perf_counter() - start}


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="runs/reproduce", help="output folder (default: runs/reproduce)")
    parser.add_argument("--profile", default="reduced", choices=PROFILES,
                        help="reduced: synthetic default on a CPU in under an hour (default); "
                        "paper: the paper's settings (real data, GPU)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these experiments (names of config/experiments/*.yaml)")
    parser.add_argument("--source-root", help="labelled source dataset (IDDA) for the adaptation rows")
    parser.add_argument("--target-root", help="target dataset (CamVid) for every row")
    parser.add_argument("--device", help="train.device for every run (auto | cpu | cuda | cuda:N)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides for every run, e.g. train.max_iters=4")
    parser.add_argument("--experiments", type=Path, help="folder of experiment YAMLs (default: config/experiments)")
    parser.add_argument("--skip-sweep", action="store_true", help="no post-training pruning sweep")
    parser.add_argument("--skip-report", action="store_true", help="no report.md at the end")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")


def plan_runs(args) -> tuple[dict, list[tuple[Experiment, Config, Path, str]]]:
    """The plan document and the runs to launch: (experiment, config, config file, state)."""
    folder = args.experiments or experiments_dir()
    out = Path(args.out)
    chosen = EXPERIMENTS
    if args.only:
        known = {e.name for e in EXPERIMENTS}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        chosen = tuple(e for e in EXPERIMENTS if e.name in args.only)
    plan: dict = {"profile": args.profile, "experiments_dir": str(folder), "overrides": list(args.overrides),
                  "experiments": {}}
    runs: list[tuple[Experiment, Config, Path, str]] = []
    first_of: dict[str, str] = {}
    for exp in chosen:
        cfg = resolve_config(exp.name, args.profile, folder, out, list(args.overrides), args.source_root,
                             args.target_root, args.device)
        key = config_key(exp.command, cfg)
        if key in first_of:  # same training run as an earlier row
            plan["experiments"][exp.name] = {"command": exp.command, "run": first_of[key], "same_as": first_of[key]}
            continue
        first_of[key] = exp.name
        config_path = out / "configs" / f"{exp.name}.yaml"
        state = run_state(out / exp.name, cfg)
        plan["experiments"][exp.name] = {"command": exp.command, "run": exp.name, "config": str(config_path),
                                         "state": state}
        runs.append((exp, cfg, config_path, state))
    return plan, runs


def write_plan(out: Path, plan: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{PLAN_FILE}.tmp"
    tmp.write_text(json.dumps(plan, indent=2) + "\n")
    tmp.replace(out / PLAN_FILE)


def run(args) -> int:
    start = time.perf_counter()
    out = Path(args.out)
    try:
        plan, runs = plan_runs(args)
        if not args.dry_run:
            ensure_data([cfg for _, cfg, _, state in runs if state != "done"])
    except (ConfigError, subprocess.CalledProcessError) as exc:
        print(f"uda-seg reproduce: {exc}", file=sys.stderr)
        return 2
    reused = sum(1 for e in plan["experiments"].values() if "same_as" in e)
    todo = [r for r in runs if r[3] != "done"]
    print(f"reproduce ({args.profile} profile): {len(plan['experiments'])} experiments, {len(runs)} training "
          f"runs ({reused} rows share another row's run), {len(runs) - len(todo)} already finished", flush=True)
    failures = []
    for i, (exp, cfg, config_path, state) in enumerate(runs, start=1):
        entry = plan["experiments"][exp.name]
        cmd = train_command(exp, config_path, out / exp.name, state)
        if args.dry_run:
            print(f"[{i}/{len(runs)}] {exp.name} ({state}): {' '.join(cmd)}")
            continue
        if state == "done":
            print(f"[{i}/{len(runs)}] {exp.name}: finished earlier, skipped", flush=True)
            entry["seconds"] = 0.0
            continue
        config_path.parent.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, config_path)
        print(f"[{i}/{len(runs)}] {exp.name} ({state}): {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, check=False).returncode
        entry["seconds"] = time.perf_counter() - t0
        entry["state"] = "done" if code == 0 else f"failed (exit status {code})"
        if code != 0:
            failures.append(exp.name)
        write_plan(out, plan)
    if args.dry_run:
        return 0
    plan["training_seconds"] = time.perf_counter() - start
    if not args.skip_sweep:
        plan["sweep"] = run_sweep_for(out, plan, args.device or "auto")
    write_plan(out, plan)
    if not args.skip_report:
        from uda_seg_core.report import write_report

        plan["seconds_before_report"] = time.perf_counter() - start
        plan["cpu_seconds_before_report"] = cpu_seconds()
        write_plan(out, plan)
        report = write_report(out, out / "report.md", device=args.device or "auto")
        print(f"reproduce: report {report}")
    plan["total_seconds"] = time.perf_counter() - start
    plan["cpu_seconds"] = cpu_seconds()
    write_plan(out, plan)
    print(f"reproduce: {len(runs)} training runs, {'sweep, ' if not args.skip_sweep else ''}report in "
          f"{_duration(plan['total_seconds'])} (wall clock), {_duration(plan['cpu_seconds'])} of CPU time")
    if failures:
        print(f"uda-seg reproduce: {len(failures)} run(s) failed: {', '.join(failures)}; rerun the same "
              f"command to retry them (finished runs are skipped)", file=sys.stderr)
        return 1
    return 0
