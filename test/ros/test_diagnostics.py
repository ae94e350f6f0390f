"""LatencyTracker summary -> /diagnostics: keys, values and levels.

    .venv/bin/pytest test/ros/test_diagnostics.py -q
"""
from __future__ import annotations

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from uda_seg_core.inference.latency import LatencyTracker
from uda_seg_ros.diagnostics import build_diagnostics, diagnostic_level, status_values


def tracker_with(**counts) -> LatencyTracker:
    tracker = LatencyTracker()
    for name, n in counts.items():
        tracker.count(name, n)
    return tracker


def test_array_holds_counters_and_stage_percentiles():
    tracker = tracker_with(received=5, processed=4, dropped=1)
    for ms in (10, 20, 30):
        tracker.record("inference", ms / 1000)
    array = build_diagnostics(tracker.summary(), Time(sec=7), name="/cam/uda_segmentation",
                              hardware_id="cpu")
    assert array.header.stamp.sec == 7
    (status,) = array.status
    assert status.name == "/cam/uda_segmentation: segmentation" and status.hardware_id == "cpu"
    values = status_values(status)
    assert values["frames_received"] == "5" and values["frames_dropped"] == "1"
    assert values["inference_count"] == "3"
    assert float(values["inference_p50_ms"]) == pytest.approx(20.0)
    assert float(values["inference_max_ms"]) == pytest.approx(30.0)
    assert {"fps", "frames_processed", "frames_rejected", "inference_p90_ms",
            "inference_p99_ms"} <= set(values)
    assert status.level == DiagnosticStatus.OK


def test_levels_compare_with_the_previous_report():
    start = tracker_with(received=10, processed=10).summary()
    assert diagnostic_level(tracker_with().summary(),
                            None)[0] == DiagnosticStatus.WARN  # nothing yet
    rejected = tracker_with(received=12, processed=11, rejected=1).summary()
    level, message = diagnostic_level(rejected, start)
    assert level == DiagnosticStatus.WARN and "1 rejected" in message
    # The next report with no new rejections is OK again.
    assert diagnostic_level(tracker_with(received=13, processed=12, rejected=1).summary(),
                            rejected)[0] == DiagnosticStatus.OK
    failing = tracker_with(received=13, processed=10, failed=3).summary()
    level, message = diagnostic_level(failing, start)
    assert level == DiagnosticStatus.ERROR and "failed on all 3" in message
    stuck = tracker_with(received=14, processed=10).summary()
    level, message = diagnostic_level(stuck, start)
    assert level == DiagnosticStatus.WARN and "4 frames received, none finished" in message
