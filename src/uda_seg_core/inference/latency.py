"""Per-stage latency and throughput statistics over a rolling window (no ROS).

The node and the benchmarks time each step of the data path (decode, preprocess,
inference, postprocess, publish, end-to-end) and report percentiles over the last
`window` samples, frames per second over the same window, and counters.

    tracker = LatencyTracker(window=300)
    with tracker.measure("inference"):
        ids = segmenter.infer(batch)
    tracker.count("processed")
    print(tracker.format_summary())

A `TrackerGroup` times one step into several trackers at once: the inference of a batch
of frames from several cameras is a sample of each camera's `inference` stage.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np

COUNTERS = ("received", "processed", "dropped", "rejected")
# The counter whose events define the frame rate.
FRAME_COUNTER = "processed"


class LatencyTracker:
    """Rolling per-stage latency windows, an fps estimate and event counters.

    Every method takes a lock, so the subscription callback, the worker thread and the
    diagnostics timer may share one tracker.
    """

    def __init__(self, window: int = 300, clock: Callable[[], float] = time.perf_counter):
        if int(window) < 1:
            raise ValueError(f"LatencyTracker window must be >= 1 sample, got {window}")
        self.window = int(window)
        self._clock = clock
        self._lock = threading.Lock()
        self._stages: dict[str, deque[float]] = {}
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._frame_times: deque[float] = deque(maxlen=self.window)

    def record(self, stage: str, seconds: float) -> None:
        """Add one sample (in seconds) to the window of `stage`."""
        with self._lock:
            samples = self._stages.get(stage)
            if samples is None:
                samples = self._stages[stage] = deque(maxlen=self.window)
            samples.append(float(seconds))

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Time the body of a `with` block as one sample of `stage` (also on error)."""
        start = self._clock()
        try:
            yield
        finally:
            self.record(stage, self._clock() - start)

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to counter `name`; 'processed' events also feed the fps estimate."""
        now = self._clock()
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n
            if name == FRAME_COUNTER:
                self._frame_times.extend([now] * n)

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    @property
    def stages(self) -> list[str]:
        with self._lock:
            return list(self._stages)

    def percentiles(self, stage: str) -> dict[str, float | int | None]:
        """p50/p90/p99/max/mean of `stage` in milliseconds over the window.

        A stage with no samples yet gives `count` 0 and None values (JSON null, not NaN).
        """
        with self._lock:
            samples = np.array(self._stages.get(stage, ()), dtype=np.float64)
        if samples.size == 0:
            return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
        ms = samples * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return {"count": int(ms.size), "p50": float(p50), "p90": float(p90), "p99": float(p99),
                "max": float(ms.max()), "mean": float(ms.mean())}

    def fps(self) -> float:
        """Processed frames per second over the window (0 until two frames are done)."""
        with self._lock:
            times = list(self._frame_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def summary(self) -> dict:
        """Everything as plain types, ready for json.dumps."""
        with self._lock:
            counters = dict(self._counters)
            stages = list(self._stages)
        return {
            "window": self.window,
            "fps": self.fps(),
            "counters": counters,
            "stages": {stage: self.percentiles(stage) for stage in stages},
        }

    def format_summary(self) -> str:
        """One line: fps, counters, then p50/p99/max per stage in ms."""
        data = self.summary()
        head = [f"fps={data['fps']:.1f}"]
        head += [f"{name}={value}" for name, value in data["counters"].items()]
        parts = [" ".join(head)]
        for stage, stats in data["stages"].items():
            if stats["count"]:
                parts.append(f"{stage}[ms] p50={stats['p50']:.1f} p99={stats['p99']:.1f} "
                             f"max={stats['max']:.1f}")
        return " | ".join(parts)


class TrackerGroup:
    """Several LatencyTrackers timed as one: `measure(stage)` adds the same sample to each
    (a batched step is one sample of every member frame's stage)."""

    def __init__(self, trackers: Iterable[LatencyTracker]):
        self.trackers: list[LatencyTracker] = []
        for tracker in trackers:
            if all(tracker is not known for known in self.trackers):
                self.trackers.append(tracker)

    def record(self, stage: str, seconds: float) -> None:
        for tracker in self.trackers:
            tracker.record(stage, seconds)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, time.perf_counter() - start)
