"""Timing every candidate and the eager reference in one interleaved run, and choosing the
fastest candidate within the mIoU budget (or none)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.inference.timing import interleaved, percentile
from uda_seg_core.models import ClassIds, load_model
from uda_seg_core.optimize.deploy.plan import REFERENCE_ID, Plan


def time_all(p: Plan, frame: np.ndarray, reference_frame: np.ndarray,
             progress: bool) -> dict[str, dict]:
    """p50 / p90 of every candidate (on `frame`, at the input size) and of the eager
    reference (on `reference_frame`, at its own size), interleaved in one run."""
    reference, _ = load_model(p.r.checkpoint)
    eager = ClassIds(reference.eval()).eval()
    x = torch.from_numpy(reference_frame)

    def run_eager() -> object:
        with torch.inference_mode():
            return eager(x)

    runners: dict[str, Callable[[], object]] = {REFERENCE_ID: run_eager}
    for c in p.candidates:
        backend = OnnxRuntimeBackend(c.file, device="cpu", threads=p.threads)
        runners[c.id] = lambda b=backend: b.infer(frame)
    samples = interleaved(runners, p.r.repeats, p.r.warmup, progress, gap_s=p.r.gap_ms / 1e3,
                          budget_s=p.r.case_budget)
    out = {}
    for name, values in samples.items():
        wall = [w for w, _ in values]
        out[name] = {"p50_ms": 1e3 * percentile(wall, 50), "p90_ms": 1e3 * percentile(wall, 90),
                     "samples": len(wall)}
    return out


def choose(rows: list[dict], reference_miou: float, max_loss: float) -> str:
    """The id of the fastest row within `max_loss` mIoU points of `reference_miou`; each
    row gains 'loss_points', 'within_budget', 'chosen' and 'reason'. With none within the
    budget, None: nothing is chosen (bug guarded: the unpruned fp32 export served as a
    'fallback' although, at a smaller input size, it too loses more than the budget)."""
    for row in rows:
        row["loss_points"] = 100.0 * (reference_miou - row["miou"])
        row["within_budget"] = row["loss_points"] <= max_loss + 1e-9
    ok = sorted((r for r in rows if r["within_budget"]), key=lambda r: r["p50_ms"])
    chosen = ok[0] if ok else None
    for row in rows:
        row["chosen"] = row is chosen
        if row is chosen:
            row["reason"] = "chosen: fastest within the budget"
        elif not row["within_budget"]:
            row["reason"] = (f"outside the budget: loses {row['loss_points']:.2f} points "
                             f"> {max_loss:g}")
        else:
            row["reason"] = (f"within the budget but slower: p50 {row['p50_ms']:.1f} ms vs "
                             f"{chosen['p50_ms']:.1f} ms")
    return chosen["id"] if chosen else None


def first_frame(dataset) -> np.ndarray:
    """The split's first network input as a (1, 3, H, W) float32 array, for the timing."""
    return np.ascontiguousarray(dataset[0]["image"][None].numpy(), dtype=np.float32)
