"""Timing several ways of running a model against each other, in one process and one run.

    samples = interleaved({"fp32": run_fp32, "int8": run_int8}, repeats=7, warmup=1)
    p50_ms = 1e3 * percentile([wall for wall, _ in samples["int8"]], 50)

Shared by `uda-seg benchmark` and `uda-seg deploy`: on a machine whose load drifts, only
ratios measured within one interleaved run mean anything.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(runners: dict[str, Callable[[], object]], repeats: int, warmup: int,
                progress: bool = True, gap_s: float = 0.05, budget_s: float = 0.0,
                min_repeats: int = 3,
                seed: int = 0) -> dict[str, list[tuple[float, float]]]:
    """Every round runs every case (still short of its repeats) once, in a fresh random order.

    Random order, not a rotation: a rotation keeps each case behind the same neighbour,
    and a neighbour's worker threads still spinning after its run (ONNX Runtime's pool,
    OpenMP) would always slow the same case. `gap_s` of sleep between cases lets those
    threads go idle. With `budget_s`, a case whose fastest warm-up run took long gets fewer
    repeats (at least `min_repeats`), so a slow alternative does not stretch the run.
    """
    target = dict.fromkeys(runners, repeats)
    for name, fn in runners.items():
        fastest = float("inf")  # of the warm-ups: one preempted warm-up does not cut repeats
        for _ in range(warmup):
            fastest = min(fastest, timed(fn)[0])
            time.sleep(gap_s)
        if warmup and budget_s > 0:
            target[name] = max(min(repeats, min_repeats),
                               min(repeats, int(budget_s / max(fastest, 1e-9))))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(repeats), desc="repeats", dynamic_ncols=True, leave=False,
                  disable=not progress):
        names = [n for n in runners if len(samples[n]) < target[n]]
        for i in rng.permutation(len(names)):
            samples[names[i]].append(timed(runners[names[i]]))
            time.sleep(gap_s)
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
