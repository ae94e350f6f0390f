"""LatencyTracker -> diagnostic_msgs/DiagnosticArray for `/diagnostics`.

One DiagnosticStatus per report, named after the node, with key/value pairs a
diagnostic_aggregator, `ros2 topic echo /diagnostics` or rqt_runtime_monitor can show:

    fps, frames_received, frames_processed, frames_dropped, frames_rejected, ...
    <stage>_p50_ms, <stage>_p90_ms, <stage>_p99_ms, <stage>_max_ms, <stage>_count

Level: OK while frames flow; WARN when frames were rejected or inference failed since
the previous report, or accepted frames did not finish (frames that a deactivated managed
node only counts are not accepted), or none were processed yet;
ERROR when inference failed on every frame since the previous report.

    array = build_diagnostics(tracker.summary(), stamp, name="uda_segmentation")
    values = status_values(array.status[0])          # {"fps": "14.9", ...}

A node serving several cameras adds one status per camera after the total's, named
"<node>: segmentation <input topic>", from the summary's "cameras" entry. `model` pairs
(the model file, backend, network size, resize mode, class names, ...) follow the
total's values, so a monitor shows what is being served next to how fast.
"""
from __future__ import annotations

from collections.abc import Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

PERCENTILES = ("p50", "p90", "p99", "max")


def summary_values(summary: dict) -> list[tuple[str, str]]:
    """Flatten LatencyTracker.summary() into (key, value) strings; pure, no messages."""
    values = [("fps", f"{summary['fps']:.2f}"), ("window", str(summary["window"]))]
    values += [(f"frames_{name}", str(count)) for name, count in summary["counters"].items()]
    for stage, stats in summary["stages"].items():
        values.append((f"{stage}_count", str(stats["count"])))
        for key in PERCENTILES:
            value = stats[key]
            values.append((f"{stage}_{key}_ms", "nan" if value is None else f"{value:.3f}"))
    return values


def diagnostic_level(summary: dict, previous: dict | None) -> tuple[bytes, str]:
    """(level, message) from the counters now and at the previous report."""
    now = summary["counters"]
    before = (previous or {}).get("counters", {})

    def delta(name: str) -> int:
        return now.get(name, 0) - before.get(name, 0)

    processed, failed = delta("processed"), delta("failed")
    accepted = delta("received") - delta("rejected") - delta("inactive")
    if failed > 0 and processed == 0:
        return (DiagnosticStatus.ERROR,
                f"segmentation failed on all {failed} frames since the last report")
    problems = [f"{delta(name)} {name}" for name in ("rejected", "failed") if delta(name) > 0]
    if accepted > 0 and processed == 0:
        problems.append(f"{accepted} frames received, none finished")
    if problems:
        return DiagnosticStatus.WARN, ", ".join(problems) + f"; {summary['fps']:.1f} fps"
    if now.get("processed", 0) == 0:
        return DiagnosticStatus.WARN, "no frames processed yet"
    return DiagnosticStatus.OK, f"{summary['fps']:.1f} fps"


def build_status(summary: dict, name: str, hardware_id: str = "",
                 previous: dict | None = None) -> DiagnosticStatus:
    """One DiagnosticStatus named `name` from a LatencyTracker summary."""
    level, message = diagnostic_level(summary, previous)
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=key, value=value) for key, value in summary_values(summary)]
    return status


def build_diagnostics(summary: dict, stamp, name: str, hardware_id: str = "",
                      previous: dict | None = None,
                      model: Sequence[tuple[str, str]] = ()) -> DiagnosticArray:
    """A DiagnosticArray stamped `stamp`: the node's status (with the `model` key/values
    after the statistics), then one per camera when the summary has "cameras" (each judged
    against its own previous counters)."""
    array = DiagnosticArray()
    array.header.stamp = stamp
    total = build_status(summary, f"{name}: segmentation", hardware_id, previous)
    total.values.extend(KeyValue(key=key, value=str(value)) for key, value in model)
    array.status = [total]
    before = (previous or {}).get("cameras", {})
    for topic, camera in summary.get("cameras", {}).items():
        array.status.append(build_status(camera, f"{name}: segmentation {topic}", hardware_id,
                                         before.get(topic)))
    return array


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """The key/value pairs of one status as a dict (for readers and tests)."""
    return {kv.key: kv.value for kv in status.values}
