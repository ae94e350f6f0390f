"""`uda-seg report`: the paper's Tables I-IV and Figures 3-5 in markdown, from a runs folder.

    uda-seg report runs/reproduce                    # writes runs/reproduce/report.md
    uda-seg report runs/reproduce --out REPORT.md --examples 4

Reads what the runs wrote: each OUT/<experiment>/metrics.json (target-test accuracy and
mIoU of the weights selected on val, seconds per epoch, per-epoch times) and config.yaml,
OUT/plan.json from `uda-seg reproduce` (which rows share a run, how long it all took),
the pruning sweep of the optimised model (Figs. 3 and 4), and the checkpoints for the
qualitative figure (Fig. 5: image | before adaptation | adapted | adapted + optimised |
ground truth). Run directories are found by experiment name (config/experiments/<name>.yaml
-> OUT/<name>); a row whose run is missing says so. Every table shows the paper's numbers
(real IDDA -> CamVid, ResNet-101, GPU) beside the measured ones; the report says which
data the runs used, and numbers on the synthetic default are not CamVid numbers.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from uda_seg_core.checkpoint import CheckpointError, load_checkpoint
from uda_seg_core.config import (
    AdaptConfig,
    AugmentationConfig,
    input_normalisation,
    load_config,
    merge,
)
from uda_seg_core.data import eval_split
from uda_seg_core.labels import CLASS_NAMES
from uda_seg_core.metrics import predict_ids
from uda_seg_core.models import load_model
from uda_seg_core.pruning import prune_permanently, target_sparsity
from uda_seg_core.reporting import atomic_write_text, markdown_table, prediction_grid
from uda_seg_core.runtime import resolve_device
from uda_seg_core.study.experiments import (
    DEFAULT_PTP_SPARSITY,
    EXTRA,
    FIG5_ADAPTED,
    FIG5_BEFORE,
    PLAN_FILE,
    PTP_EXPERIMENT,
    SWEEP_DIR,
    TABLE_I,
    TABLE_II,
    TABLE_III,
    TABLE_III_AUGMENTATIONS,
    TABLE_IV,
)

MISSING = "not run"


@dataclass
class Run:
    name: str  # experiment name
    dir: Path
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    same_as: str = ""

    @property
    def test(self) -> dict:
        return self.metrics.get("test") or {}

    @property
    def finished(self) -> bool:
        return bool(self.test)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or rerun the run that "
                         f"wrote it") from None


def find_runs(runs_dir: Path) -> dict[str, Run]:
    """Experiment name -> Run: from plan.json when `uda-seg reproduce` wrote one (rows that
    share a run point at it), plus every other sub-folder holding a metrics.json."""
    plan = _read_json(runs_dir / PLAN_FILE)
    names: dict[str, tuple[str, str]] = {}
    for name, entry in plan.get("experiments", {}).items():
        names[name] = (entry.get("run", name), entry.get("same_as", ""))
    for path in sorted(runs_dir.glob("*/metrics.json")):
        names.setdefault(path.parent.name, (path.parent.name, ""))
    runs = {}
    for name, (run_name, same_as) in names.items():
        run_dir = runs_dir / run_name
        config_path = run_dir / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        runs[name] = Run(name, run_dir, _read_json(run_dir / "metrics.json"), config or {}, same_as)
    return runs


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def seconds(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def epoch_times(metrics: dict) -> tuple[float | None, float | None]:
    """(initial, final) seconds per epoch: the medians of the first and last quarter of
    the epochs' wall times, leaving out epoch 1 (it pays for warm-up) when there are 3+.
    Wall time counts the epoch's pruning of D too: that cost is part of the method."""
    times = [e["wall_seconds"] for e in metrics.get("epochs", [])
             if e.get("wall_seconds") is not None]
    if len(times) >= 3:
        times = times[1:]
    if not times:
        return None, None
    q = max(1, len(times) // 4)
    return statistics.median(times[:q]), statistics.median(times[-q:])


def discriminator_zeros(run_dir: Path) -> float | None:
    """Fraction of exact zeros in D's weights (conv kernels, factor matrices) at the end
    of training, from last.pt; None when there is no such checkpoint."""
    try:
        state = load_checkpoint(run_dir / "last.pt").get("modules", {}).get("discriminator")
    except CheckpointError:
        return None
    if not state:
        return None
    weights = [t for t in state.values() if isinstance(t, torch.Tensor) and t.ndim >= 2]
    total = sum(t.numel() for t in weights)
    return sum(int((t == 0).sum()) for t in weights) / total if total else None


def last_target(config: dict) -> float | None:
    """The schedule's sparsity at the last epoch (0 when D is not pruned)."""
    adapt = config.get("adapt")
    if not adapt:
        return None
    cfg = merge(AdaptConfig(), adapt, "adapt.")
    return target_sparsity(int(config.get("train", {}).get("epochs", 0)), cfg)


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    return markdown_table(header, rows, align).splitlines()


def _run_label(run: Run | None, label: str) -> str:
    if run is not None and run.same_as:
        return f"{label} (= {run.same_as})"
    return label


def _paper_cells(paper: dict, keys: tuple[str, ...]) -> list[str]:
    return [fmt(paper[k]) if isinstance(paper.get(k), float) else paper.get(k, "") for k in keys]


def table_i(runs: dict[str, Run]) -> list[str]:
    rows = []
    for name, label, paper in TABLE_I + EXTRA:
        run = runs.get(name)
        p = _paper_cells(paper, ("accuracy", "miou", "time"))
        if run is None or not run.finished:
            rows.append([label, MISSING, "", "", "", *p])
            continue
        m = run.metrics
        rows.append([_run_label(run, label), fmt(run.test.get("accuracy")),
                     fmt(run.test.get("miou")),
                     seconds(m.get("seconds_per_epoch")), m.get("training_time") or "n/a", *p])
    return _table(["", "Accuracy", "mIoU", "s / epoch", "training time", "paper: Accuracy",
                   "paper: mIoU", "paper: training time"], rows)


def table_ii(runs: dict[str, Run]) -> list[str]:
    rows = []
    for name, label, paper in TABLE_II:
        run = runs.get(name)
        p = [fmt(paper["accuracy"]), fmt(paper["miou"]), paper["initial"], paper["final"]]
        if run is None or not run.finished:
            rows.append([label, MISSING, "", "", "", "", "", "", *p])
            continue
        initial, final = epoch_times(run.metrics)
        ratio = f"{final / initial:.2f}" if initial and final else "n/a"
        target = last_target(run.config)
        zeros = discriminator_zeros(run.dir)
        rows.append([_run_label(run, label), fmt(run.test.get("accuracy")),
                     fmt(run.test.get("miou")),
                     seconds(initial), seconds(final), ratio, fmt(target, 2), fmt(zeros, 3), *p])
    return _table(["", "Accuracy", "mIoU", "initial epoch (s)", "final epoch (s)",
                   "final / initial", "D sparsity target (last epoch)", "D zeros at end",
                   "paper: Accuracy", "paper: mIoU", "paper: initial", "paper: final"], rows)


def _aug_cells(config: dict) -> list[str]:
    a = merge(AugmentationConfig(), config.get("augmentation", {}), "augmentation.")

    def rng(values: list[float], p: float | None = None) -> str:
        if not values:
            return "x"
        text = f"[{values[0]:g}, {values[1]:g}]"
        return f"{text}, {p:g}" if p is not None else text

    return [f"{a.hflip:g}" if a.hflip else "x", rng(a.blur_sigma), rng(a.linear_contrast),
            rng(a.noise_std, a.noise_p), rng(a.multiply, a.multiply_p)]


def table_iii(runs: dict[str, Run]) -> list[str]:
    rows = []
    for name, label, paper in TABLE_III:
        run = runs.get(name)
        config = {"augmentation": TABLE_III_AUGMENTATIONS[name.split("_")[1]]}
        if run is not None and run.config:
            config = run.config
        p = [fmt(paper["accuracy"]), fmt(paper["miou"])]
        if run is None or not run.finished:
            rows.append([label, *_aug_cells(config), MISSING, "", *p])
            continue
        rows.append([_run_label(run, label), *_aug_cells(config), fmt(run.test.get("accuracy")),
                     fmt(run.test.get("miou")), *p])
    return _table(["", "HorizontalFlip", "GaussianBlur", "LinearContrast", "AddGaussianNoise",
                   "Multiply", "Accuracy", "mIoU", "paper: Accuracy", "paper: mIoU"], rows,
                  "llllllrrrr")


def table_iv(runs: dict[str, Run]) -> list[str]:
    rows = []
    for name, label, paper in TABLE_IV:
        run = runs.get(name)
        p = [fmt(paper["accuracy"]), fmt(paper["miou"])]
        if run is None or not run.finished:
            rows.append([label, "", MISSING, "", *p])
            continue
        lr = run.config.get("train", {}).get("lr")
        rows.append([_run_label(run, label), f"{lr:g}" if lr else "n/a",
                     fmt(run.test.get("accuracy")),
                     fmt(run.test.get("miou")), *p])
    return _table(["", "lr", "Accuracy", "mIoU", "paper: Accuracy", "paper: mIoU"], rows)


def per_class_table(runs: dict[str, Run], names: list[tuple[str, str]]) -> list[str]:
    rows = []
    for name, label in names:
        run = runs.get(name)
        if run is None or not run.finished:
            continue
        iou = run.test.get("per_class_iou", {})
        rows.append([label, *(fmt(iou.get(c), 2) for c in CLASS_NAMES)])
    return _table(["", *CLASS_NAMES], rows) if rows else []


def all_runs_table(runs: dict[str, Run]) -> list[str]:
    rows = []
    for name, run in sorted(runs.items()):
        if run.same_as or not run.metrics:
            continue
        c, m = run.config, run.metrics
        model, adapt, train = c.get("model", {}), c.get("adapt", {}), c.get("train", {})
        d = adapt.get("discriminator", "") if m.get("command") == "adapt" else "-"
        rows.append([name, m.get("command", "?"), model.get("backbone", "?"), d,
                     adapt.get("prune", "") if d != "-" else "-",
                     f"{adapt.get('dropout', 0):g}" if d != "-" else "-",
                     train.get("optimizer", "?"), str(train.get("epochs", "?")),
                     f"{m.get('iteration', '?')}/{m.get('max_iters', '?')}",
                     fmt(run.test.get("accuracy")),
                     fmt(run.test.get("miou")), fmt(run.test.get("miou_12")),
                     seconds(m.get("seconds_per_epoch"))])
    return _table(["run", "command", "backbone", "D", "D pruning", "D dropout", "optimiser",
                   "epochs", "iterations", "Accuracy", "mIoU", "mIoU (12)", "s / epoch"], rows,
                  "lllllllrrrrrr")


def sweep_section(runs: dict[str, Run], report_dir: Path) -> tuple[list[str], float | None]:
    """Figs. 3 and 4 from the sweep outputs, and the global sparsity that holds mIoU."""
    run = runs.get(PTP_EXPERIMENT)
    sweep_dir = run.dir / SWEEP_DIR if run is not None else None
    doc = _read_json(sweep_dir / "sweep.json") if sweep_dir is not None else {}
    if not doc:
        return [(f"No pruning sweep found ({sweep_dir or PTP_EXPERIMENT}): run `uda-seg "
                 f"prune-sweep --checkpoint <run>/best.pt --data <target> --out "
                 f"<run>/{SWEEP_DIR}`.")], None
    lines = [(f"Post-training unstructured L1 pruning of `{PTP_EXPERIMENT}` (BiSeNet+FCD after "
              f"incremental pruning of D, the paper's optimised model), {doc.get('images')} images "
              f"of the target {doc.get('split')} split. Unpruned: accuracy "
              f"{fmt(doc['baseline'].get('accuracy'))}, mIoU "
              f"{fmt(doc['baseline'].get('miou'))}."), ""]
    for name, caption in (("fig3_ptp_modules.png",
                           "Fig. 3: PTP on modules (one group pruned at a time)"),
                          ("fig4_ptp_global.png", "Fig. 4: PTP on the global model")):
        if (sweep_dir / name).is_file():
            lines += [f"![{caption}]({os.path.relpath(sweep_dir / name, report_dir)})", "",
                      f"*{caption}.*", ""]
    tol = doc.get("tolerance", 0.01)
    holds = doc.get("max_sparsity_within_tolerance", {})
    lines += [(f"Largest sparsity at which mIoU stays within {tol:g} of the unpruned model (every "
               f"smaller sparsity too); the paper finds about 0.4 for global pruning and less for "
               f"single modules:"), ""]
    lines += _table(["pruned", "sparsity"],
                    [[k.split("/")[1], fmt(v, 2)] for k, v in holds.items()])
    global_s = holds.get("global/global")
    return lines, global_s


def _load_for_figure(run: Run | None):
    if run is None or not (run.dir / "best.pt").is_file():
        return None
    model, _ = load_model(run.dir / "best.pt")
    return model


def figure_models(runs: dict[str, Run], sparsity: float) -> list[tuple[str, torch.nn.Module]]:
    """Fig. 5's columns: (title, model) for before adaptation, adapted, adapted + optimised
    (the PTP experiment pruned at `sparsity`); a column whose run is missing is left out."""
    columns = [(f"before adaptation\n{FIG5_BEFORE}", runs.get(FIG5_BEFORE)),
               (f"adapted\n{FIG5_ADAPTED}", runs.get(FIG5_ADAPTED)),
               (f"adapted + optimised\n{PTP_EXPERIMENT}, PTP {sparsity:.2f}",
                runs.get(PTP_EXPERIMENT))]
    models = []
    for title, run in columns:
        model = _load_for_figure(run)
        if model is None:
            continue
        if "optimised" in title and sparsity > 0:
            prune_permanently(model, sparsity)
        models.append((title, model))
    return models


def qualitative_figure(runs: dict[str, Run], path: Path, sparsity: float, n: int,
                       device: str) -> Path | None:
    """Fig. 5: image | before adaptation | adapted | adapted + optimised | ground truth, on
    target test images spread over the split."""
    adapted = runs.get(FIG5_ADAPTED)
    if adapted is None or not (adapted.dir / "config.yaml").is_file():
        return None
    models = figure_models(runs, sparsity)
    if not models:
        return None
    cfg = load_config(adapted.dir / "config.yaml")
    normalisation = input_normalisation(cfg)
    dataset = eval_split(cfg.data, cfg.data.target_root, cfg.data.test_split,
                         cfg.data.target_format, normalisation=normalisation)
    indices = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, num=min(n, len(dataset)))})
    dev = resolve_device(device)
    rows, names = [], []
    for index in indices:
        item = dataset[index]
        label = item["label"].numpy()
        panels = [normalisation.invert(item["image"].numpy())]
        for _, model in models:
            model.to(dev).eval()
            with torch.inference_mode():
                pred = predict_ids(model, item["image"][None].to(dev), tuple(label.shape))[0]
            panels.append(pred.cpu().numpy())
        rows.append([*panels, label])
        names.append(item["name"])
    titles = ["image", *(t for t, _ in models), "ground truth"]
    return prediction_grid(rows, titles, path, row_names=names, panel_inches=2.6)


def describe_data(runs: dict[str, Run]) -> str:
    roots = sorted({(r.config.get("data", {}).get("source_root", "?"),
                     r.config.get("data", {}).get("target_root", "?"))
                    for r in runs.values() if r.config})
    synthetic = any((Path(t).parent / "summary.json").is_file() or "synthetic" in t
                    for _, t in roots)
    where = "; ".join(f"source `{s}` -> target `{t}`" for s, t in roots[:4])
    if synthetic:
        return (f"**Data: the synthetic default** ({where}). These numbers are measured on "
                f"procedurally "
                "generated scenes; they are not CamVid numbers and are not comparable to the "
                "paper's column, which is real IDDA -> CamVid.")
    return f"Data: {where}."


def describe_profile(runs_dir: Path, runs: dict[str, Run]) -> list[str]:
    plan = _read_json(runs_dir / PLAN_FILE)
    configs = [r.config for r in runs.values() if r.config]
    backbones = sorted({c.get("model", {}).get("backbone", "?") for c in configs})
    crops = sorted({"x".join(str(v) for v in c.get("data",
                                                   {}).get("crop_size", [])) for c in configs})
    epochs = sorted({c.get("train", {}).get("epochs", 0) for c in configs})
    devices = sorted({r.metrics.get("device", "?") for r in runs.values() if r.metrics})
    lines = [(f"Profile: **{plan.get('profile', 'unknown (no plan.json)')}**; backbones "
              f"{', '.join(backbones)}; crops {', '.join(crops)}; epochs "
              f"{', '.join(str(e) for e in epochs)}; devices {', '.join(devices)}.")]
    if plan.get("seconds_before_report") is not None:
        cpu = plan.get("cpu_seconds_before_report")
        lines.append(f"`uda-seg reproduce` took {plan['seconds_before_report'] / 60:.1f} minutes "
                     f"(wall clock"
                     + (f"; {cpu / 60:.1f} minutes of CPU time" if cpu else "")
                     + ") for the training runs and the sweep, before this report.")
    return lines


def build_report(runs_dir: Path, report_path: Path, examples: int = 3, device: str = "auto",
                 qualitative: bool = True) -> str:
    runs = find_runs(runs_dir)
    report_dir = report_path.parent
    lines = ["# The paper's tables and figures, reproduced", "",
             (f"Generated by `uda-seg report {runs_dir}` on {time.strftime('%Y-%m-%d %H:%M')}. "
              f"Accuracy and mIoU "
             "(11 named classes) are measured on the target's test split with the weights selected "
             "on its val split. Paper columns: real IDDA -> CamVid, ResNet-101 (Tables I-III) / "
             "ResNet-18 (Table IV), 720x960 crops, 100 (Table IV: 50) epochs, on a GPU."), "",
             describe_data(runs), "", *describe_profile(runs_dir, runs), ""]
    lines += ["## Table I: discriminators for domain adaptation", "",
              ("Seconds per epoch are measured on this machine (iterations only); the paper's "
               "training time is its own GPU's."), "", *table_i(runs), ""]
    lines += ["Per-class IoU (target test):", "",
              *per_class_table(runs, [(n, lab) for n, lab, _ in TABLE_I + EXTRA]), ""]
    lines += ["## Table II: optimisations of the discriminator during training", "",
              ("Initial / final epoch: medians of the first and last quarter of the epochs' wall "
               "times (epoch 1 left out as warm-up), including the per-epoch pruning of D. *D "
               "zeros at end* counts exact zeros in D's weights after the last iteration: in the "
               "paper's mode the mask is removed right after pruning, so pruned weights regrow "
               "during the epoch. Unstructured zeros do not make dense kernels faster "
               "(benchmarks/unstructured_pruning_speed.py), so epoch-time differences here are "
               "noise or the pruning step's own cost."), "", *table_ii(runs), ""]
    lines += ["## Table III: data augmentation (supervised on the target)", "", *table_iii(runs),
              ""]
    lines += ["## Table IV: optimisers (supervised on the target)", "", *table_iv(runs), ""]
    sweep_lines, holds = sweep_section(runs, report_dir)
    lines += ["## Figures 3 and 4: post-training pruning", "", *sweep_lines, ""]
    lines += ["## Figure 5: qualitative results", ""]
    if qualitative:
        sparsity = holds if holds is not None else DEFAULT_PTP_SPARSITY
        chosen = "the largest that holds mIoU" if holds is not None else "the paper default"
        fig = qualitative_figure(runs, report_dir / "figures" / "fig5_qualitative.png", sparsity,
                                 examples, device)
        if fig is not None:
            lines += [f"![Fig. 5]({os.path.relpath(fig, report_dir)})", "",
                      (f"*Fig. 5: target test images; before adaptation = `{FIG5_BEFORE}` (the "
                       f"paper's caption uses its upper bound here), adapted = `{FIG5_ADAPTED}`, "
                       f"adapted + optimised = incremental DTP + global PTP at sparsity "
                       f"{sparsity:.2f} ({chosen}).*"), ""]
        else:
            lines += [f"Not drawn: `{FIG5_ADAPTED}` has no finished run.", ""]
    else:
        lines += ["Not drawn (--no-qualitative).", ""]
    lines += ["## All runs", "", *all_runs_table(runs), ""]
    return "\n".join(lines)


def write_report(runs_dir: str | Path, out: str | Path | None = None, examples: int = 3,
                 device: str = "auto",
                 qualitative: bool = True) -> Path:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs folder not found: {runs_dir}")
    out = Path(out) if out else runs_dir / "report.md"
    text = build_report(runs_dir, out, examples, device, qualitative)
    return atomic_write_text(out, text)
