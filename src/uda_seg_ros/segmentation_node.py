"""ROS 2 node `uda_segmentation`: camera images in, BiSeNet class masks out.

    segmentation_node --ros-args -p model_path:=runs/best.pt -r image:=/camera/image_raw
    ros2 launch uda_seg_ros segment.launch.py model_path:=runs/best.pt \\
        image_topic:=/camera/image_raw

Data path (each step timed in a LatencyTracker, reported on /diagnostics):

    image (SensorDataQoS) -> check -> newest-frame slot -> worker thread:
      decode (conversions) -> Segmenter.segment_batch (preprocess, inference, postprocess)
      -> segmentation/class_mask mono8 (+ camera_info, when the input has one),
         confidence mono8, color_mask / overlay rgb8 (only while subscribed)
    segmentation/label_info: the class names, once, latched

This node is thin: parameters (`parameters.py`) -> InferenceConfig -> Segmenter, the
topics (`serving.py`) and the ROS-free frame pipeline (`pipeline.py`: slot, worker,
timing, counters). The subscription callback only validates the message and puts it in
a one-frame slot; a frame that arrives before the worker took the previous one replaces
it (counted as dropped), so no queue ever grows. Every output carries the input header
unchanged. Bad input is rejected with a rate-limited log line and a counter; a failed
inference is logged and counted; neither stops the node. SIGINT / SIGTERM end it
cleanly (exit 0) with a one-line summary, whenever they come (`process.py`). The managed
variant with the same parameters is `segmentation_lifecycle_node`.
"""
from __future__ import annotations

import sys
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

from uda_seg_ros.parameters import (
    NODE_NAME,
    PARAMETERS,
    NodeConfigError,
    Param,
    declare_parameters,
    descriptor,
    read_settings,
)
from uda_seg_ros.pipeline import Frame, LatestFrame
from uda_seg_ros.process import run_node
from uda_seg_ros.serving import SegmentationServer, stamp_ns

__all__ = ["NODE_NAME", "PARAMETERS", "Frame", "LatestFrame", "NodeConfigError", "Param",
           "SegmentationNode", "descriptor", "main", "stamp_ns"]


def on_set_parameters(settings: dict[str, Any], params) -> SetParametersResult:
    """Apply the dynamic parameters to `settings`; ranges and read_only are enforced by
    rclpy from the descriptors."""
    for param in params:
        if param.name in settings:
            settings[param.name] = param.value
    return SetParametersResult(successful=True)


class SegmentationNode(Node):
    """Configured and active from the start; `close()` stops it with a summary."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.config = read_settings(self)
        self.add_on_set_parameters_callback(lambda params: on_set_parameters(self.config,
                                                                             params))
        self.server = SegmentationServer(self)
        self.server.configure(self.config)
        self.server.activate()

    @property
    def segmenter(self):
        return self.server.segmenter

    @property
    def pipeline(self):
        return self.server.pipeline

    def close(self) -> None:
        """Stop the worker, then log the summary (and write stats_file)."""
        self.server.close()


def main(args: list[str] | None = None) -> int:
    """Console script `segmentation_node`; returns the exit status (0 after SIGINT/SIGTERM)."""
    return run_node(lambda: SegmentationNode(), NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
