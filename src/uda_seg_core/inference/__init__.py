"""Serving without ROS: `Segmenter` (pre/post-processing around a backend) and
`LatencyTracker` (per-stage percentiles, fps, counters).

    from uda_seg_core.inference import Segmenter, LatencyTracker
    seg = Segmenter.from_checkpoint("best.pt", device="auto", input_size=(360, 480))
    mask = seg.segment(rgb)

`LatencyTracker` and `TrackerGroup` import at once; the Segmenter names load
`inference.segmenter` (and torch, seconds on a busy machine) on first use, so that the ROS
node can check its parameters and install its signal handlers before torch is imported.
"""
from uda_seg_core.inference.latency import LatencyTracker, TrackerGroup

_SEGMENTER_NAMES = (
    "BACKENDS", "EXTENSIONS", "Backend", "ModelInfo", "Segmenter", "SegmenterError",
    "TorchBackend", "register_backend", "resolve_backend", "resolve_device",
)

__all__ = ["LatencyTracker", "TrackerGroup", *_SEGMENTER_NAMES]


def __getattr__(name: str):
    if name in _SEGMENTER_NAMES:
        # Late for start-up time: the segmenter module imports torch (see the docstring).
        from uda_seg_core.inference import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
