"""The adaptation study at a small CPU size: source only vs adapted (FCD, TFD, DWD) vs the
upper bound, target-test mIoU over seeds, and the discriminators' cost per iteration.

    python benchmarks/adaptation_study.py                         # everything, 3 seeds
    python benchmarks/adaptation_study.py --seeds 0 --methods source-only fcd
    python benchmarks/adaptation_study.py --timing-only
    python benchmarks/adaptation_study.py --kill-check            # kill -9 + --resume check

Every run is an ordinary `uda-seg train|adapt --config config/study_small.yaml` command
(printed before it starts) writing to `runs/study_small/<method>_s<seed>`; a run whose
metrics.json already holds a test result is reused, so an interrupted study continues
where it stopped (`--rerun` starts runs again). Methods:

    source-only  uda-seg train, IDDA labels only (the baseline)
    fcd|tfd|dwd  uda-seg adapt with that discriminator, lambda_adv 0.001
    lambda0      uda-seg adapt, FCD, lambda_adv 0: target images go through G (and its
                 BatchNorm statistics) but no adversarial gradient; separates the two effects
    upper        uda-seg train on the target's own train labels (the upper bound)

The cost of each discriminator is measured separately, in one process, with the three
adversarial steps interleaved on the same batches (a shared machine's load drifts; an
interleaved median ratio does not), both for the whole iteration and for D's own part.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from uda_seg_core.reporting import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "study_small.yaml"
METHODS = ("source-only", "lambda0", "fcd", "tfd", "dwd", "upper")


def method_overrides(method: str, data: Path) -> tuple[str, list[str]]:
    """(command, overrides) of one method."""
    if method == "source-only":
        return "train", []
    if method == "upper":
        return "train", ["data.source_format=camvid", f"data.source_root={data / 'camvid'}"]
    if method == "lambda0":
        return "adapt", ["adapt.discriminator=fcd", "adapt.lambda_adv=0"]
    return "adapt", [f"adapt.discriminator={method}"]


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict:
    run_name = f"{method}_s{seed}"
    run_dir = Path(args.out) / run_name
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists() and not args.rerun:
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("test"):
            return metrics
    command, extra = method_overrides(method, args.data)
    cmd = [sys.executable, "-m", "uda_seg_core.cli", command, "--config", str(CONFIG),
           "--overwrite",
           f"data.source_root={args.data / 'idda'}", f"data.target_root={args.data / 'camvid'}",
           *extra, f"train.seed={seed}", f"train.run_name={run_name}", f"train.out_dir={args.out}",
           f"train.max_iters={args.iters}", *args.override]
    if (run_dir / "last.pt").exists() and not args.rerun:  # interrupted earlier: continue it
        cmd = [sys.executable, "-m", "uda_seg_core.cli", command, "--resume", str(run_dir)]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=child_env(args), stdout=subprocess.DEVNULL)
    print(f"  {run_name}: {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(metrics_path.read_text())


def child_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def results_table(results: dict[str, list[dict]]) -> str:
    rows = []
    for method, runs in results.items():
        if not runs:
            continue
        test = [r["test"] for r in runs]
        sec = [r["seconds_per_iteration"] for r in runs if r.get("seconds_per_iteration")]
        sec_text = f"{statistics.mean(sec):.3f}" if sec else "-"
        rows.append([method, len(runs), mean_std([t["miou"] for t in test]),
                     mean_std([t["miou_12"] for t in test]),
                     mean_std([t["accuracy"] for t in test]),
                     mean_std([r["best"]["miou"] for r in runs if r.get("best")]), sec_text])
    return markdown_table(["method", "seeds", "target-test mIoU (11)", "mIoU (12)", "pixel acc.",
                           "best val mIoU", "s/it (run)"], rows)


def per_seed_table(results: dict[str, list[dict]], seeds: list[int]) -> str:
    rows = []
    for method, runs in results.items():
        by_seed = {int(r["run"].rsplit("_s", 1)[1]): r["test"]["miou"] for r in runs}
        rows.append([method, *(f"{by_seed[s]:.3f}" if s in by_seed else "-" for s in seeds)])
    return markdown_table(["method", *(f"seed {s}" for s in seeds)], rows)


def discriminator_timing(args: argparse.Namespace) -> str:
    """Median seconds of one adversarial iteration and of D's step alone, per
    discriminator, interleaved round by round on the same batches."""
    import torch

    from uda_seg_core.config import load_config
    from uda_seg_core.runtime import seed_everything
    from uda_seg_core.train.adversarial import (
        build_adversarial_discriminator,
        discriminator_step,
        generator_step,
    )
    from uda_seg_core.train.optim import build_discriminator_optimizer, build_segmentation_optimizer
    from uda_seg_core.train.supervised import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    names = ("fcd", "tfd", "dwd")
    cfg = load_config(CONFIG)
    h, w = cfg.data.crop_size
    n = cfg.train.batch_size
    seed_everything(0)
    source = {"image": torch.randn(n, 3, h, w), "label": torch.randint(0, 12, (n, h, w))}
    target = {"image": torch.randn(n, 3, h, w)}
    setups = {}
    for name in names:
        cfg_d = load_config(CONFIG, [f"adapt.discriminator={name}"])
        model = build_model(cfg_d, torch.device("cpu")).train()
        d = build_adversarial_discriminator(cfg_d, torch.device("cpu")).train()
        setups[name] = (cfg_d, model, d, build_segmentation_optimizer(model, cfg_d),
                        build_discriminator_optimizer(d, cfg_d))
    total = {k: [] for k in names}
    d_only = {k: [] for k in names}
    for r in range(args.timing_rounds + 1):
        for name in names:
            cfg_d, model, d, opt_g, opt_d = setups[name]
            t0 = time.perf_counter()
            _, p_s, p_t = generator_step(model, d, opt_g, source, target, cfg_d)
            t1 = time.perf_counter()
            discriminator_step(d, opt_d, p_s, p_t, cfg_d)
            t2 = time.perf_counter()
            if r:  # round 0 warms up allocators and kernels
                total[name].append(t2 - t0)
                d_only[name].append(t2 - t1)
    med = {k: statistics.median(v) for k, v in total.items()}
    med_d = {k: statistics.median(v) for k, v in d_only.items()}
    params = {k: sum(p.numel() for p in setups[k][2].parameters()) for k in names}
    lines = [(f"Discriminator cost, batch {n} at {h}x{w}, ResNet-18 G, CPU, "
              f"{torch.get_num_threads()} thread(s), median of {args.timing_rounds} interleaved "
              f"rounds:"),
             markdown_table(
                 ["discriminator", "D parameters", "s/iteration", "ratio to FCD", "D step (s)",
                  "D step ratio"],
                 [[name.upper(), f"{params[name]:,}", f"{med[name]:.3f}",
                   f"{med[name] / med['fcd']:.2f}", f"{med_d[name]:.4f}",
                   f"{med_d[name] / med_d['fcd']:.2f}"] for name in names])]
    return "\n".join(lines)


def kill_check(args: argparse.Namespace) -> str:
    """kill -9 a running `uda-seg adapt` after its second checkpoint, then --resume it."""
    run_dir = Path(args.out) / "killcheck"
    every, iters = 10, 40
    cmd = [sys.executable, "-m", "uda_seg_core.cli", "adapt", "--config", str(CONFIG),
           "--overwrite",
           f"data.source_root={args.data / 'idda'}", f"data.target_root={args.data / 'camvid'}",
           "train.run_name=killcheck", f"train.out_dir={args.out}", f"train.max_iters={iters}",
           f"train.checkpoint_every={every}", "train.val_every=20"]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, env=child_env(args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    from uda_seg_core.checkpoint import CheckpointError, load_checkpoint

    def saved_iteration() -> int:
        try:
            return load_checkpoint(run_dir / "last.pt")["training_state"]["iteration"]
        except CheckpointError:  # not written yet
            return 0

    while saved_iteration() < 2 * every:
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended (exit {proc.returncode}) before it could be killed")
        time.sleep(0.2)
    time.sleep(1.5)  # into the next interval: the kill loses the iterations since the checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at = saved_iteration()
    resume = [sys.executable, "-m", "uda_seg_core.cli", "adapt", "--resume", str(run_dir)]
    print("$", " ".join(resume[1:]), flush=True)
    subprocess.run(resume, check=True, env=child_env(args), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ok = metrics["iteration"] == iters and metrics["test"] is not None
    return (f"kill -9 (exit {proc.returncode}) with last.pt at iteration {at}; --resume continued "
            f"from {at} and finished at {metrics['iteration']}/{iters}, target-test mIoU "
            f"{metrics['test']['miou']:.3f}: {'OK' if ok else 'FAILED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "synthetic",
                        help="make-synthetic output (created if missing)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "study_small"))
    parser.add_argument("--iters", type=int, default=250, help="iterations per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP threads per run (0 = torch default)")
    parser.add_argument("--timing-rounds", type=int, default=10)
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--kill-check", action="store_true",
                        help="also do the kill -9 / --resume check")
    parser.add_argument("--rerun", action="store_true", help="train again even where results exist")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run")
    args = parser.parse_args()
    if not (args.data / "idda").is_dir():
        subprocess.run([sys.executable, "-m", "uda_seg_core.cli", "make-synthetic", "--out",
                        str(args.data)],
                       check=True)
    sections = []
    if not args.timing_only:
        results: dict[str, list[dict]] = {m: [] for m in args.methods}
        for seed in args.seeds:
            for method in args.methods:
                results[method].append(run_one(method, seed, args))
        sections += [(f"Target-test results, {args.iters} iterations per run "
                      f"(config/study_small.yaml), mean ± std over "
                      f"seeds:"), results_table(results), "", "mIoU (11) per seed:",
                     per_seed_table(results, args.seeds)]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "study.json").write_text(json.dumps(
            {m: [{"run": r["run"], "test": r["test"], "best": r["best"],
                  "seconds_per_iteration": r["seconds_per_iteration"]} for r in runs]
             for m, runs in results.items()}, indent=2))
    if not args.no_timing:
        sections += ["", discriminator_timing(args)]
    if args.kill_check:
        sections += ["", kill_check(args)]
    print("\n" + "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
