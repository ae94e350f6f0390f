"""Serving without ROS: `Segmenter` (pre/post-processing around a backend) and
`LatencyTracker` (per-stage percentiles, fps, counters).

    from uda_seg_core.inference import Segmenter, LatencyTracker
    seg = Segmenter.from_checkpoint("model.onnx", device="auto", resize_mode="letterbox")
    mask = seg.segment(rgb)

Nothing here imports torch unless a PyTorch checkpoint is served: `Segmenter` and the
ONNX Runtime backend need numpy, OpenCV and onnxruntime only, so a vehicle serving an
exported .onnx installs no torch (README, "Serving without torch"). The names of the torch
backend (`TorchBackend`, `BackendModule`, `resolve_device`) load it on first use, by name.
`LatencyTracker` and `TrackerGroup` import at once; the Segmenter names on first use.
"""
import importlib

from uda_seg_core.inference.latency import LatencyTracker, TrackerGroup

_SEGMENTER = "uda_seg_core.inference.segmenter"
_TORCH_BACKEND = "uda_seg_core.inference.torch_backend"
_LAZY = {
    **dict.fromkeys(("BACKENDS", "EXTENSIONS", "Backend", "ModelInfo", "Placement", "RESIZE_MODES",
                     "Segmenter", "SegmenterError", "place", "register_backend",
                     "resolve_backend"), _SEGMENTER),
    **dict.fromkeys(("TorchBackend", "BackendModule", "resolve_device"), _TORCH_BACKEND),
}

__all__ = ["LatencyTracker", "TrackerGroup", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        # By name (importlib): the segmenter costs an OpenCV import, the torch backend torch.
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
