"""Interleaved timing (inference/timing.py): every case each round in random order, and a time
budget that gives slow cases fewer repeats."""
from __future__ import annotations

from uda_seg_core.benchmark import interleaved


def test_interleaving_runs_every_case_each_round_in_random_order():
    calls = []
    samples = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                          repeats=8,
                          warmup=1, progress=False, gap_s=0.0)
    assert calls[:2] == ["a", "b"]  # warm-up, in order
    rounds = [tuple(calls[i:i + 2]) for i in range(2, len(calls), 2)]
    assert all(sorted(r) == ["a", "b"] for r in rounds)  # each round runs each case once
    assert len(set(rounds)) == 2  # and the order changes between rounds
    assert {k: len(v) for k, v in samples.items()} == {"a": 8, "b": 8}


def test_slow_cases_get_fewer_repeats_within_the_budget():
    import time

    # The fastest of three warm-ups sets a case's cost, so one preempted warm-up on a loaded
    # machine (it happened: 100 ms for a no-op) still leaves the fast case all its repeats;
    # the slow case's fits twice in the budget (-> min_repeats).
    samples = interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.1)}, repeats=10,
                          warmup=3, progress=False, gap_s=0.0, budget_s=0.25, min_repeats=3)
    assert len(samples["fast"]) == 10 and len(samples["slow"]) == 3
