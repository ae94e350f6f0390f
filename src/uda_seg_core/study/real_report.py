"""What `uda-seg real-study` computes from its runs' records, and the report it writes.

Per row (`aggregate`), from the per-run records of summary.json (IoU values as fractions):

- each evaluation's mIoU over seeds: mean, sample standard deviation, per-seed values;
- `vs_source_only`: the paired differences row - source_only, seed by seed (only seeds both
  rows ran), per evaluation: mean, standard deviation, values;
- `per_class_change`: per class, the mean over those seeds of row IoU - source_only IoU;
- `keeps_day`: whether the mean paired difference on val (0016E5: daytime on day-dusk, a
  target-side drive on sim-real) is no more than `KEEPS_DAY_POINTS` (1.0) mIoU points below
  source only;
- `gap_closed` (pairs with an upper bound trained on target labels: day-dusk): on the target
  evaluation, the row's paired gain over source_only (its seeds) / (upper_bound -
  source_only, means over seeds) (1.0 = as good as training with the target's labels);
- for rows with a discriminator: D's accuracy on each domain (`discriminator_accuracy`: the
  run's metrics.json history, the mean of the interval means of d_acc_source /
  d_acc_target over its last `D_ACC_ENTRIES` validations) and the gradient measurement of
  `study/gradients.py` (lambda_adv |grad L_adv| / |grad L_seg| on its last.pt), mean over
  seeds.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence

from uda_seg_core.reporting import markdown_table

REFERENCE = "source_only"
KEEPS_DAY_POINTS = 1.0  # mIoU points on val a row may lose against source only
D_ACC_ENTRIES = 2  # validations at the end of a run whose D accuracy is averaged


def seed_stats(values: Sequence[float]) -> dict:
    values = list(values)
    return {"mean": statistics.fmean(values), "values": values,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def runs_of(records: dict[str, dict], row: str) -> dict[int, dict]:
    """The row's records by seed."""
    return {r["seed"]: r for r in records.values() if r["method"] == row}


def _miou(record: dict, key: str) -> float | None:
    return (record.get(key) or {}).get("miou")


def paired_differences(records: dict[str, dict], row: str, key: str,
                       reference: str = REFERENCE) -> dict | None:
    """row - reference on evaluation `key`, seed by seed, over the seeds both have."""
    mine, ref = runs_of(records, row), runs_of(records, reference)
    seeds = [s for s in sorted(mine) if s in ref and _miou(mine[s], key) is not None
             and _miou(ref[s], key) is not None]
    if not seeds:
        return None
    diffs = [_miou(mine[s], key) - _miou(ref[s], key) for s in seeds]
    return {**seed_stats(diffs), "seeds": seeds}


def per_class_changes(records: dict[str, dict], row: str, key: str,
                      reference: str = REFERENCE) -> dict[str, float | None]:
    """Per class, the mean over the shared seeds of row IoU - reference IoU (None where a
    class is undefined in either run of every shared seed)."""
    mine, ref = runs_of(records, row), runs_of(records, reference)
    changes: dict[str, list[float]] = {}
    for seed in sorted(mine):
        if seed not in ref:
            continue
        a = (mine[seed].get(key) or {}).get("per_class_iou") or {}
        b = (ref[seed].get(key) or {}).get("per_class_iou") or {}
        for name in a:
            changes.setdefault(name, [])
            if a[name] is not None and b.get(name) is not None:
                changes[name].append(a[name] - b[name])
    return {name: statistics.fmean(v) if v else None for name, v in changes.items()}


def gap_closed(rows: dict[str, dict], row: str, key: str, upper_bound: str) -> float | None:
    """The row's paired gain over source only on evaluation `key` (its `vs_source_only`:
    seed by seed, over the seeds both ran) divided by the gap, upper_bound - source only,
    from their means over seeds; None without the figures or without a gap to close."""
    try:
        gain = rows[row]["vs_source_only"][key]["mean"]
        ref, top = (rows[n][key]["mean"] for n in (REFERENCE, upper_bound))
    except KeyError:
        return None
    gap = top - ref
    return gain / gap if gap > 0 else None


def discriminator_accuracy(metrics: dict, entries: int = D_ACC_ENTRIES) -> dict | None:
    """D's accuracy on each domain at the end of a run: the mean over the last `entries`
    validations of the history's interval means (`train_losses`) of d_acc_source and
    d_acc_target. None for a run that logged none (no D, or trained before they were
    kept)."""
    logged = [h for h in metrics.get("history", [])
              if "d_acc_source" in (h.get("train_losses") or {})]
    if not logged:
        return None
    last = logged[-entries:]
    return {"d_acc_source": statistics.fmean(h["train_losses"]["d_acc_source"] for h in last),
            "d_acc_target": statistics.fmean(h["train_losses"]["d_acc_target"] for h in last),
            "iterations": [h["iteration"] for h in last]}


def aggregate(records: dict[str, dict], rows: Sequence, keys: Sequence[str],
              target_key: str = "", upper_bound: str = "") -> dict[str, dict]:
    """Per row of `rows` (Methods, in order) that has records: see the module docstring."""
    out: dict[str, dict] = {}
    for method in rows:
        mine = runs_of(records, method.name)
        if not mine:
            continue
        row: dict = {"label": method.label, "seeds": sorted(mine)}
        for key in keys:
            values = [_miou(mine[s], key) for s in sorted(mine)]
            values = [v for v in values if v is not None]
            if values:
                row[key] = seed_stats(values)
        if method.name != REFERENCE:
            diffs = {k: d for k in keys if (d := paired_differences(records, method.name, k))}
            if diffs:
                row["vs_source_only"] = diffs
                row["per_class_change"] = {k: per_class_changes(records, method.name, k)
                                           for k in diffs}
            if "val" in diffs:
                row["keeps_day"] = diffs["val"]["mean"] >= -KEEPS_DAY_POINTS / 100 - 1e-12
        d_acc = [r["discriminator"] for r in mine.values() if r.get("discriminator")]
        if d_acc:
            row["discriminator"] = {
                k: statistics.fmean(d[k] for d in d_acc) for k in ("d_acc_source",
                                                                   "d_acc_target")}
        grads = [r["gradient"] for r in mine.values() if r.get("gradient")]
        if grads:
            row["gradient"] = {k: statistics.fmean(g[k] for g in grads)
                               for k in ("ratio", "cosine", "seg_grad_norm", "adv_grad_norm",
                                         "d_p_target_on_source", "d_p_target_on_target")
                               if all(g.get(k) is not None for g in grads)}
            row["gradient"]["lambda_adv"] = grads[0]["lambda_adv"]
        out[method.name] = row
    if target_key and upper_bound:
        for name, row in out.items():
            if name not in (REFERENCE, upper_bound):
                share = gap_closed(out, name, target_key, upper_bound)
                if share is not None:
                    row["gap_closed"] = share
    return out


# --------------------------------------------------------------------------- the report


def _cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    if len(stats["values"]) == 1:
        return f"{100 * stats['mean']:.1f}"
    return (f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f} "
            f"({', '.join(f'{100 * v:.1f}' for v in stats['values'])})")


def _diff_cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    if len(stats["values"]) == 1:
        return f"{100 * stats['mean']:+.1f} (seed {stats['seeds'][0]})"
    return (f"{100 * stats['mean']:+.1f} ± {100 * stats['std']:.1f} "
            f"({', '.join(f'{100 * v:+.1f}' for v in stats['values'])})")


def _runs(summary: dict, row: str) -> list[dict]:
    return [r for r in summary["runs"].values() if r["method"] == row]


def figures_table(summary: dict) -> str:
    evaluations = summary["evaluations"]
    rows = []
    for name, row in summary["rows"].items():
        per_it = [r["seconds_per_iteration"] for r in _runs(summary, name)
                  if r.get("seconds_per_iteration")]
        walls = [r["wall_seconds"] / 60 for r in _runs(summary, name) if r.get("wall_seconds")]
        rows.append([f"{row['label']} (`{name}`)", len(row["seeds"]),
                     *(_cell(row.get(e["key"])) for e in evaluations),
                     f"{statistics.fmean(per_it):.2f}" if per_it else "-",
                     "/".join(f"{w:.1f}" for w in walls) or "-"])
    headers = ["row", "seeds", *(e["title"] for e in evaluations), "s/iteration", "wall min"]
    return markdown_table(headers, rows, align="l" * len(headers))


def keeps_header(val_side: str) -> str:
    """What the `keeps_day` column means where val is on `val_side` (the summary's, from the
    pair): on the source side (day-dusk: daytime) it is the accuracy a dusk-adapted network
    must not forget; on the target side (sim-real: a real drive) it only says whether
    adapting cost accuracy there."""
    if val_side == "source":
        return f"keeps daytime accuracy (val ≥ source only - {KEEPS_DAY_POINTS:.1f})"
    return f"val not below source only (≥ source only - {KEEPS_DAY_POINTS:.1f})"


def differences_table(summary: dict) -> str:
    evaluations, gap = summary["evaluations"], bool(summary.get("upper_bound"))
    rows = []
    for name, row in summary["rows"].items():
        diffs = row.get("vs_source_only")
        if not diffs:
            continue
        keeps = {True: "yes", False: "**no**"}.get(row.get("keeps_day"), "-")
        share = row.get("gap_closed")
        rows.append([name, *(_diff_cell(diffs.get(e["key"])) for e in evaluations),
                     *([f"{100 * share:.0f}%" if share is not None else "-"] if gap else []),
                     keeps])
    headers = ["row", *(f"Δ {e['title']}" for e in evaluations),
               *(["share of the gap closed"] if gap else []), keeps_header(summary["val_side"])]
    return markdown_table(headers, rows, align="l" * len(headers)) if rows else ""


def discriminator_table(summary: dict) -> str:
    rows = []
    for name, row in summary["rows"].items():
        d, g = row.get("discriminator") or {}, row.get("gradient") or {}
        if not d and not g:
            continue

        def f(value, fmt):
            return format(value, fmt) if value is not None else "-"

        rows.append([name, f(d.get("d_acc_source"), ".3f"), f(d.get("d_acc_target"), ".3f"),
                     f(g.get("lambda_adv"), "g"), f(g.get("ratio"), ".4f"),
                     f(g.get("cosine"), "+.3f"), f(g.get("d_p_target_on_source"), ".3f"),
                     f(g.get("d_p_target_on_target"), ".3f")])
    headers = ["row", "D accuracy on source", "D accuracy on target", "lambda_adv",
               "lambda·|∇L_adv| / |∇L_seg|", "cosine(∇L_seg, ∇L_adv)",
               "D's P(target) on source", "on target"]
    return markdown_table(headers, rows, align="lrrrrrrr") if rows else ""


def per_class_tables(summary: dict) -> list[str]:
    out = []
    for e in summary["evaluations"]:
        rows, classes = [], []
        for name, row in summary["rows"].items():
            change = (row.get("per_class_change") or {}).get(e["key"])
            if not change:
                continue
            classes = classes or list(change)
            rows.append([name, *(f"{100 * change[c]:+.1f}" if change.get(c) is not None else "-"
                                 for c in classes)])
        if rows:
            out.append(f"Per-class IoU change against source only, {e['title']} (points, mean "
                       f"over the seeds both rows ran):\n\n"
                       + markdown_table(["row", *classes], rows, align="l" + "r" * len(classes)))
    return out


def report_markdown(summary: dict) -> str:
    """The tables a reader quotes: mIoU (%) per row and evaluation, the paired differences
    against source only, the discriminators, the per-class changes."""
    lines = [f"# Real-data study, pair {summary['pair']}", "",
             f"mIoU (%, 11 named classes) on real CamVid; {summary['description']}.", "",
             figures_table(summary), "",
             "mean ± sample standard deviation (per-seed values) where several seeds ran; "
             "wall min: each seed's run, as measured when it was trained."]
    differences = differences_table(summary)
    if differences:
        lines += ["", "Paired differences against source only (mIoU points, row - source "
                  "only seed by seed: mean ± standard deviation (per-seed values))"
                  + ("; share of the gap closed on the target evaluation = the row's paired "
                     "difference / (upper bound - source only, means over seeds)" if
                     summary.get("upper_bound") else "") + ":", "", differences]
    discriminators = discriminator_table(summary)
    if discriminators:
        lines += ["", f"Discriminators (mean over seeds): D's accuracy on each domain over "
                  f"the last {D_ACC_ENTRIES} validation intervals of the run; gradients on "
                  f"the segmentation network at its last.pt (`study/gradients.py`):", "",
                  discriminators]
    for table in per_class_tables(summary):
        lines += ["", table]
    figure = summary.get("figure")
    if figure:
        lines += ["", f"![{figure['caption']}]({figure['file']})"]
    return "\n".join(lines) + "\n"
