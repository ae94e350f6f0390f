"""Summarise finished training runs: val mIoU at every validation, the best one, per-class
IoU, seconds per iteration and wall time, and the mean +- standard deviation over runs
(seeds) when the runs are seeds of one recipe, as one JSON and one markdown table.

    .venv/bin/python benchmarks/summarise_runs.py runs/pretrained/upper_s0 \\
        runs/pretrained/upper_s1 runs/pretrained/upper_s2 \\
        --out docs/pretrained_backbone/upper_bound.json

Each run directory holds the `metrics.json` and `config.yaml` that `uda-seg train` writes;
nothing is recomputed (the figures are the run's own validations on the full val frames).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from uda_seg_core.config import load_config, to_dict
from uda_seg_core.reporting import atomic_write_json, atomic_write_text, markdown_table

THIN = {"Column_Pole": "pole", "SignSymbol": "sign", "Pedestrian": "pedestrian",
        "Bicyclist": "bicyclist"}  # the thin classes, as the table names them


def run_summary(run_dir: Path) -> dict:
    """One run's figures from its metrics.json and config.yaml."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{metrics_path}: no metrics.json (is {run_dir} a finished run?)")
    metrics = json.loads(metrics_path.read_text())
    # through the current Config, so a field added since the run reads as its default
    config = to_dict(load_config(run_dir / "config.yaml"))
    history = metrics.get("history") or []
    if not history:
        raise SystemExit(f"{metrics_path}: no validation in 'history'")
    final = history[-1]
    best = metrics.get("best") or max(history, key=lambda e: e["miou"])
    return {
        "run": run_dir.name,
        "seed": config["train"].get("seed"),
        "iterations": metrics["iteration"],
        "seconds_per_iteration": round(metrics["seconds_per_iteration"], 4),
        "training_time": metrics["training_time"],
        "miou_by_iteration": {str(e["iteration"]): round(100 * e["miou"], 2) for e in history},
        "final_miou": round(100 * final["miou"], 2),
        "best_miou": round(100 * best["miou"], 2),
        "best_iteration": best["iteration"],
        "final_per_class_iou": {k: round(100 * v, 1) for k, v in final["per_class_iou"].items()},
        "model": config["model"],
        "train": {k: config["train"].get(k) for k in ("optimizer", "lr", "loss", "aux_weight",
                                                      "batch_size", "max_iters",
                                                      "class_balance")},
    }


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarise(runs: list[dict]) -> dict:
    classes = list(runs[0]["final_per_class_iou"])
    recipes = [json.dumps([r["model"], {**r["train"], "seed": None}], sort_keys=True)
               for r in runs]
    return {
        "runs": runs,
        "same_recipe": len(set(recipes)) == 1,  # seeds of one recipe: the mean means something
        "final_miou": mean_std([r["final_miou"] for r in runs]),
        "best_miou": mean_std([r["best_miou"] for r in runs]),
        "final_per_class_iou": {c: mean_std([r["final_per_class_iou"][c] for r in runs])
                                for c in classes},
    }


def table(summary: dict) -> str:
    headers = ["run", "seed", "s/it", "time", "mIoU by iteration", "final", "best",
               *THIN.values()]
    rows = [[r["run"], r["seed"], r["seconds_per_iteration"], r["training_time"],
             " / ".join(f"{v:.1f}" for v in r["miou_by_iteration"].values()),
             f"{r['final_miou']:.1f}", f"{r['best_miou']:.1f} @{r['best_iteration']}",
             *(f"{r['final_per_class_iou'][c]:.1f}" for c in THIN)]
            for r in summary["runs"]]
    if not summary["same_recipe"]:  # a mean over different recipes says nothing
        return markdown_table(headers, rows)
    f, b = summary["final_miou"], summary["best_miou"]
    rows.append(["mean +- std", "", "", "", "", f"{f['mean']:.1f} +- {f['std']:.1f}",
                 f"{b['mean']:.1f} +- {b['std']:.1f}",
                 *(f"{summary['final_per_class_iou'][c]['mean']:.1f}" for c in THIN)])
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of `uda-seg train`")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the JSON here and the table beside it (.md)")
    args = parser.parse_args(argv)
    summary = summarise([run_summary(r) for r in args.runs])
    text = table(summary)
    print(text)
    if args.out is not None:
        atomic_write_json(args.out, summary)
        atomic_write_text(args.out.with_suffix(".md"), text + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
