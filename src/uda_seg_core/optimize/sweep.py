"""`uda-seg prune-sweep`: post-training unstructured pruning of BiSeNet, with the paper's plots.

    uda-seg prune-sweep --checkpoint runs/IDDA2CamVid_bisenet-r18_fcd_prune-incremental/best.pt \\
        --data data/synthetic/camvid --split test --mode both --sparsities 0:0.85:0.05

The paper's section III-C (PTP): the trained segmentation network is L1-pruned at each
sparsity of [0, 0.85] in steps of 0.05 and evaluated, in two ways:

- `module`: one module group at a time (spatial_path, context_path, arm, ffm, heads), every
  layer of the group pruned to the sparsity, the rest of the network intact (Fig. 3);
- `global`: all conv/linear weights of the network ranked together (Fig. 4).

Writes to `--out` (default `<checkpoint dir>/prune_sweep_<split>/`): `sweep_module.csv`,
`sweep_global.csv`, `sweep.json` (every row with per-class IoU, the unpruned baseline and,
per curve, the largest sparsity that loses at most `--tolerance` mIoU), and
`fig3_ptp_modules.png`, `fig4_ptp_global.png` (pixel accuracy and mIoU vs sparsity).

The auxiliary heads are counted in the `heads` group and in global pruning (they are
part of the network the paper pruned) but unused at evaluation.
"""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.evaluate import checkpoint_eval_split
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.models import build_model_from_checkpoint
from uda_seg_core.pruning import prune_global, prune_modules, sparsity_report
from uda_seg_core.reporting import atomic_write_json
from uda_seg_core.runtime import resolve_device

MODES = ("module", "global")
CSV_COLUMNS = ("mode", "group", "sparsity", "measured_sparsity", "model_sparsity", "accuracy",
               "miou", "miou_12")
DEFAULT_TOLERANCE = 0.01  # mIoU points (as a fraction) a pruned model may lose and still "hold"


def parse_sparsities(text: str) -> list[float]:
    """'0:0.85:0.05' (start:stop:step, stop included) or '0,0.2,0.5' -> sorted fractions."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            count = round((stop - start) / step) + 1
            values = [round(start + i * step,
                            6) for i in range(count) if start + i * step <= stop + 1e-9]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--sparsities '{text}' must be start:stop:step with step > 0 (e.g. "
                         f"0:0.85:0.05) or a comma list (e.g. 0,0.2,0.5)") from None
    bad = [v for v in values if not 0.0 <= v < 1.0]
    if bad or not values:
        raise ValueError(f"--sparsities '{text}': every sparsity must be in [0, 1), got "
                         f"{bad or 'none'}")
    return sorted(set(values))


def module_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    groups = getattr(model, "module_groups", None)
    if groups is None:
        raise TypeError(f"{type(model).__name__} has no module_groups(); the per-module sweep "
                        f"needs the segmentation network's named parts (BiSeNet)")
    return groups()


def _evaluate(model: nn.Module, dataset, device: torch.device) -> dict:
    num_classes = getattr(model, "num_classes", None)
    return evaluate_model(model, dataset, device, num_classes=num_classes).summary()


def _row(mode: str, group: str, sparsity: float, measured: float, model_sparsity: float,
         summary: dict) -> dict:
    return {"mode": mode, "group": group, "sparsity": sparsity, "measured_sparsity": measured,
            "model_sparsity": model_sparsity, "accuracy": summary["accuracy"],
            "miou": summary["miou"],
            "miou_12": summary["miou_12"], "per_class_iou": summary["per_class_iou"]}


def pruned_copy(model: nn.Module, mode: str, group: str,
                sparsity: float) -> tuple[nn.Module, float]:
    """A copy of `model` pruned one way; returns it and the sparsity measured on the pruned
    layers (the group's for `module`, the network's for `global`)."""
    pruned = copy.deepcopy(model)
    if mode == "global":
        report = prune_global(pruned, sparsity)
    else:
        report = prune_modules(module_groups(pruned)[group], sparsity)
    return pruned, report["sparsity"]


def run_sweep(model: nn.Module, dataset, device: str | torch.device, modes: tuple[str, ...] = MODES,
              sparsities: list[float] | None = None, progress: bool = False) -> dict:
    """Evaluate `model` pruned at each sparsity, per module group and/or globally.

    Sparsity 0 is the unpruned model, evaluated once and shared by every curve.
    Returns {"baseline": summary, "rows": [row, ...]} with rows in CSV_COLUMNS order plus
    per_class_iou.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    sparsities = sparsities if sparsities is not None else parse_sparsities("0:0.85:0.05")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown sweep mode '{mode}'; choose from {', '.join(MODES)}")
    curves = [("global", "global")] if "global" in modes else []
    if "module" in modes:
        curves = [("module", g) for g in module_groups(model)] + curves
    baseline = _evaluate(model, dataset, device)
    jobs = [(m, g, s) for m, g in curves for s in sparsities if s > 0]
    rows = []
    bar = tqdm(total=len(jobs), desc="prune-sweep", disable=not progress, dynamic_ncols=True)
    for mode, group in curves:
        for s in sparsities:
            if s == 0:
                rows.append(_row(mode, group, 0.0,
                                 sparsity_report(_pruned_part(model, mode, group))["sparsity"],
                                 sparsity_report(model)["sparsity"], baseline))
                continue
            bar.set_postfix_str(f"{mode} {group} {s:.2f}")
            pruned, measured = pruned_copy(model, mode, group, s)
            rows.append(_row(mode, group, s, measured, sparsity_report(pruned)["sparsity"],
                             _evaluate(pruned, dataset, device)))
            del pruned
            bar.update(1)
    bar.close()
    return {"baseline": baseline, "rows": rows}


def _pruned_part(model: nn.Module, mode: str, group: str):
    return model if mode == "global" else module_groups(model)[group]


def max_sparsity_within(rows: list[dict], baseline_miou: float | None,
                        tolerance: float) -> float | None:
    """The largest sparsity whose mIoU is at most `tolerance` below the unpruned one, with
    every smaller sparsity also within it (the end of the flat part of the curve)."""
    if baseline_miou is None:
        return None
    best = None
    for row in sorted(rows, key=lambda r: r["sparsity"]):
        if row["miou"] is None or row["miou"] < baseline_miou - tolerance:
            break
        best = row["sparsity"]
    return best


def summarise(rows: list[dict], baseline: dict, tolerance: float) -> dict[str, float | None]:
    curves: dict[str, list[dict]] = {}
    for row in rows:
        curves.setdefault(f"{row['mode']}/{row['group']}", []).append(row)
    return {name: max_sparsity_within(r, baseline["miou"], tolerance) for name, r in curves.items()}


def _csv_cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row[k]) for k in CSV_COLUMNS})
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV with numbers parsed (missing metric -> None)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: (v if k in ("mode", "group") else (float(v) if v != "" else None))
                         for k, v in row.items()})
    return rows


def plot_curves(rows: list[dict], path: Path, title: str) -> Path:
    """Pixel accuracy and mIoU against sparsity, one line per group (Figs. 3 and 4)."""
    import matplotlib  # optional at import: only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[dict]] = {}
    for row in rows:
        curves.setdefault(row["group"], []).append(row)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for group, points in curves.items():
        points = sorted(points, key=lambda r: r["sparsity"])
        xs = [p["sparsity"] for p in points]
        for ax, key in zip(axes, ("accuracy", "miou")):
            ys = [float("nan") if p[key] is None else p[key] for p in points]
            ax.plot(xs, ys, marker="o", markersize=3, label=group)
    for ax, label in zip(axes, ("pixel accuracy", "mIoU (11 named classes)")):
        ax.set_xlabel("sparsity")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FIGURES = {"module": ("fig3_ptp_modules.png", "PTP on modules (one group pruned at a time)"),
           "global": ("fig4_ptp_global.png", "PTP on the global model")}


def write_outputs(result: dict, out: Path, meta: dict,
                  tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Path]:
    """CSV per mode, sweep.json and the figures; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    rows = result["rows"]
    for mode in MODES:
        mode_rows = [r for r in rows if r["mode"] == mode]
        if not mode_rows:
            continue
        written[f"{mode}_csv"] = write_csv(mode_rows, out / f"sweep_{mode}.csv")
        name, title = FIGURES[mode]
        label = meta.get("label", "")
        written[f"{mode}_png"] = plot_curves(mode_rows, out / name,
                                             f"{title}{' - ' + label if label else ''}")
    doc = {**meta, "tolerance": tolerance, "baseline": result["baseline"],
           "max_sparsity_within_tolerance": summarise(rows, result["baseline"], tolerance),
           "rows": rows}
    written["json"] = out / "sweep.json"
    atomic_write_json(written["json"], doc)
    return written


def sweep_checkpoint(checkpoint: str | Path, data: str | Path, fmt: str = "camvid",
                     split: str = "test",
                     modes: tuple[str, ...] = MODES, sparsities: list[float] | None = None,
                     out: str | Path | None = None, limit: int = 0,
                     eval_size: list[int] | None = None,
                     device: str = "auto", tolerance: float = DEFAULT_TOLERANCE,
                     progress: bool = True) -> dict[str, Path]:
    """The whole of `uda-seg prune-sweep` as a function (also run by `uda-seg reproduce`)."""
    torch_device = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    model = build_model_from_checkpoint(ckpt, checkpoint)
    dataset = checkpoint_eval_split(ckpt, data, split, fmt, limit=limit,
                                    eval_size=eval_size or None)
    result = run_sweep(model, dataset, torch_device, modes, sparsities, progress=progress)
    out = Path(out) if out else Path(checkpoint).parent / f"prune_sweep_{split}"
    meta = {"checkpoint": str(checkpoint), "data": str(data), "format": fmt, "split": split,
            "images": len(dataset), "label": Path(checkpoint).parent.name,
            "sparsities": sparsities or parse_sparsities("0:0.85:0.05")}
    return write_outputs(result, out, meta, tolerance)
