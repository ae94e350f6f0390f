"""LatencyTracker: percentiles, rolling window, fps, counters, thread safety.

    .venv/bin/pytest test/core/inference/test_latency.py -q
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from uda_seg_core.inference.latency import LatencyTracker


class FakeClock:
    """A clock the test advances by hand, so timings are exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_in_milliseconds():
    tracker = LatencyTracker(window=1000)
    for ms in range(1, 101):
        tracker.record("inference", ms / 1000)
    stats = tracker.percentiles("inference")
    assert stats["count"] == 100
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["max"] == pytest.approx(100.0)
    assert stats["mean"] == pytest.approx(50.5)


def test_window_keeps_only_the_last_samples():
    tracker = LatencyTracker(window=3)
    for seconds in (9.0, 9.0, 0.001, 0.002, 0.003):
        tracker.record("decode", seconds)
    stats = tracker.percentiles("decode")
    assert stats["count"] == 3
    assert stats["max"] == pytest.approx(3.0)  # the two 9 s samples rolled out


def test_empty_stage_is_json_null_not_nan():
    tracker = LatencyTracker()
    assert tracker.percentiles("publish") == {"count": 0, "p50": None, "p90": None,
                                              "p99": None, "max": None, "mean": None}
    tracker.record("inference", 0.01)
    summary = tracker.summary()
    json.dumps(summary, allow_nan=False)
    assert summary["fps"] == 0.0
    assert summary["counters"] == {"received": 0, "processed": 0, "dropped": 0, "rejected": 0}


def test_measure_times_the_block_even_when_it_raises():
    clock = FakeClock()
    tracker = LatencyTracker(clock=clock)
    with tracker.measure("preprocess"):
        clock.now += 0.25
    with pytest.raises(RuntimeError), tracker.measure("inference"):
        clock.now += 0.5
        raise RuntimeError("inference failed")
    assert tracker.percentiles("preprocess")["max"] == pytest.approx(250.0)
    assert tracker.percentiles("inference")["max"] == pytest.approx(500.0)


def test_fps_over_the_window_of_processed_frames():
    clock = FakeClock()
    tracker = LatencyTracker(window=5, clock=clock)
    tracker.count("processed")
    assert tracker.fps() == 0.0  # one frame: no span yet
    for _ in range(20):  # 10 fps, then the window keeps the last 5 frames
        clock.now += 0.1
        tracker.count("processed")
    assert tracker.fps() == pytest.approx(10.0)
    for _ in range(5):  # slows to 2 fps: the window forgets the fast frames
        clock.now += 0.5
        tracker.count("processed")
    assert tracker.fps() == pytest.approx(2.0)
    tracker.count("received", 3)
    tracker.count("dropped")
    assert tracker.fps() == pytest.approx(2.0)  # other counters do not feed fps
    assert tracker.counter("received") == 3 and tracker.counter("processed") == 26


def test_format_summary_is_one_line_with_counters_and_stages():
    tracker = LatencyTracker()
    tracker.count("received", 4)
    tracker.count("rejected")
    tracker.record("inference", 0.0123)
    line = tracker.format_summary()
    assert "\n" not in line
    assert "received=4" in line and "rejected=1" in line
    assert "inference[ms] p50=12.3" in line


def test_concurrent_use_loses_nothing():
    tracker = LatencyTracker(window=100_000)

    def work():
        for i in range(2000):
            tracker.record("inference", i * 1e-6)
            tracker.count("received")
            tracker.summary() if i % 500 == 0 else None

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.counter("received") == 8000
    assert tracker.percentiles("inference")["count"] == 8000


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window"):
        LatencyTracker(window=0)
