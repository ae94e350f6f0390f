"""Serving without ROS: `Segmenter` (pre/post-processing around a backend) and
`LatencyTracker` (per-stage percentiles, fps, counters).

    from uda_seg_core.inference import Segmenter, LatencyTracker
    seg = Segmenter.from_checkpoint("best.pt", device="auto", input_size=(360, 480))
    mask = seg.segment(rgb)
"""
from uda_seg_core.inference.latency import LatencyTracker, TrackerGroup
from uda_seg_core.inference.segmenter import (
    BACKENDS,
    EXTENSIONS,
    Backend,
    ModelInfo,
    Segmenter,
    SegmenterError,
    TorchBackend,
    register_backend,
    resolve_backend,
    resolve_device,
)

__all__ = [
    "BACKENDS", "EXTENSIONS", "Backend", "LatencyTracker", "ModelInfo", "Segmenter",
    "SegmenterError", "TorchBackend", "TrackerGroup", "register_backend", "resolve_backend",
    "resolve_device",
]
