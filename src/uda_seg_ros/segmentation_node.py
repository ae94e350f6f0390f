"""ROS 2 node `uda_segmentation`: camera images in, BiSeNet class masks out.

    segmentation_node --ros-args -p model_path:=runs/best.pt -r image:=/camera/image_raw
    ros2 launch uda_seg_ros segment.launch.py model_path:=runs/best.pt \\
        image_topic:=/camera/image_raw

Data path (each step timed in a LatencyTracker, reported on /diagnostics):

    image (SensorDataQoS) -> check -> newest-frame slot -> worker thread:
      decode (conversions) -> preprocess -> inference -> postprocess (Segmenter)
      -> segmentation/class_mask mono8, color_mask / overlay rgb8 (only while subscribed)

The subscription callback only validates the message and puts it in a one-frame slot; a
frame that arrives before the worker took the previous one replaces it (counted as
dropped), so no queue ever grows and the latency stays bounded however fast images come.
Every output carries the input header unchanged. Bad input is rejected with a
rate-limited log line and a counter; a failed inference is logged and counted; neither
stops the node. SIGINT / SIGTERM end it cleanly (exit 0) with a one-line summary.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from uda_seg_ros.conversions import (
    ImageConversionError,
    check_compressed,
    check_image,
    compressed_to_rgb,
    image_to_numpy,
    numpy_to_image,
    to_rgb,
)
from uda_seg_ros.diagnostics import build_diagnostics

try:  # Humble and later
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - older rclpy
    ExternalShutdownException = RuntimeError

NODE_NAME = "uda_segmentation"
STAGES = ("decode", "preprocess", "inference", "postprocess", "publish")
LOG_THROTTLE_S = 2.0


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None
    dynamic: bool = False  # may change while running; the rest need a restart


PARAMETERS: tuple[Param, ...] = (
    Param("model_path", "", "model file: a uda_seg checkpoint (.pt/.pth) or an exported model "
          "(.onnx); required"),
    Param("device", "auto", "auto (cuda if available) | cpu | cuda | cuda:N"),
    Param("precision", "fp32", "fp16 runs on CUDA only", choices=("fp32", "fp16")),
    Param("backend", "auto", "inference backend; auto picks it from the model file extension"),
    Param("input_width", 480, "network input width in pixels", range=(1, 8192)),
    Param("input_height", 360, "network input height in pixels", range=(1, 8192)),
    Param("output_size", "input", "input: masks resized back to the image size (nearest); "
          "network: masks at the network size", choices=("input", "network")),
    Param("overlay_alpha", 0.5, "weight of the colour mask in the overlay", range=(0.0, 1.0),
          dynamic=True),
    Param("publish_color_mask", True, "publish segmentation/color_mask while it has subscribers",
          dynamic=True),
    Param("publish_overlay", True, "publish segmentation/overlay while it has subscribers",
          dynamic=True),
    Param("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
          "sensor_msgs/CompressedImage (jpeg/png) on 'image/compressed'",
          choices=("raw", "compressed")),
    Param("input_qos", "sensor_data", "sensor_data: best effort, depth 1 (cameras); reliable: "
          "reliable, depth 1 (bags, reliable publishers)", choices=("sensor_data", "reliable")),
    Param("stats_period", 5.0, "seconds between /diagnostics reports (0 = none)",
          range=(0.0, 3600.0)),
    Param("stats_window", 300, "frames in the rolling latency window", range=(1, 1_000_000)),
    Param("warmup_iters", 3, "network runs on a blank frame before the first image",
          range=(0, 1000)),
    Param("stats_file", "", "JSON file for the latency summary written at shutdown ('' = none)"),
)


def descriptor(param: Param) -> ParameterDescriptor:
    """A ParameterDescriptor saying what the parameter is, its choices and range."""
    kind = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    desc = ParameterDescriptor(name=param.name, type=kind[type(param.default)],
                               description=param.description, read_only=not param.dynamic)
    if param.choices:
        desc.additional_constraints = "one of: " + ", ".join(param.choices)
    if param.range is not None:
        low, high = param.range
        if isinstance(param.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                            to_value=float(high))]
        else:
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return desc


class NodeConfigError(ValueError):
    """A parameter value the node cannot start with."""


class LatestFrame:
    """A one-frame mailbox between the subscription and the worker: `put` replaces any
    frame not yet taken (and says so), `take` waits for one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced a frame the worker never saw."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The newest frame, or None once closed (or after `timeout` seconds)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # time.perf_counter() when the callback got it


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class SegmentationNode(Node):
    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        for param in PARAMETERS:
            self.declare_parameter(param.name, param.default, descriptor(param))
        self.config = {param.name: self.get_parameter(param.name).value for param in PARAMETERS}
        self._check_choices()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        cfg = self.config
        if not cfg["model_path"]:
            raise NodeConfigError("parameter model_path is empty: pass -p model_path:=<checkpoint "
                                  ".pt or exported .onnx> (or model_path:=... to the launch file)")
        if not Path(cfg["model_path"]).is_file():
            raise NodeConfigError(f"model_path: model file not found: {cfg['model_path']}")
        # Imported only now: torch takes seconds to import, and a wrong parameter should
        # fail at once.
        from uda_seg_core.inference import LatencyTracker, Segmenter

        self.segmenter = Segmenter.from_checkpoint(
            cfg["model_path"], device=cfg["device"], precision=cfg["precision"],
            input_size=(cfg["input_height"], cfg["input_width"]), output_size=cfg["output_size"],
            backend=cfg["backend"])
        self.segmenter.warmup(cfg["warmup_iters"])
        self.tracker = LatencyTracker(window=cfg["stats_window"])
        self._previous_summary: dict | None = None
        self._stopping = False

        output_qos = QoSProfile(depth=5)
        self.class_pub = self.create_publisher(Image, "segmentation/class_mask", output_qos)
        self.color_pub = self.create_publisher(Image, "segmentation/color_mask", output_qos)
        self.overlay_pub = self.create_publisher(Image, "segmentation/overlay", output_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        input_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1,
            reliability=(ReliabilityPolicy.BEST_EFFORT if cfg["input_qos"] == "sensor_data"
                         else ReliabilityPolicy.RELIABLE))
        # Like image_transport: remapping 'image' moves 'image/compressed' along with it.
        base = self.resolve_topic_name("image")
        if cfg["input_transport"] == "compressed":
            topic = base.rstrip("/") + "/compressed"
            self.subscription = self.create_subscription(CompressedImage, topic,
                                                         self._on_compressed, input_qos)
        else:
            topic = base
            self.subscription = self.create_subscription(Image, topic, self._on_image, input_qos)

        self._slot = LatestFrame()
        self._worker = threading.Thread(target=self._work, name="segmentation_worker", daemon=True)
        self._worker.start()
        if cfg["stats_period"] > 0:
            self.create_timer(cfg["stats_period"], self._publish_diagnostics)
        seg = self.segmenter
        self.get_logger().info(
            f"ready: {cfg['model_path']} ({seg.backend.name} on {seg.device}, {cfg['precision']}), "
            f"network {cfg['input_width']}x{cfg['input_height']}, listening on {topic} "
            f"({cfg['input_transport']}, {cfg['input_qos']} QoS)")

    # -- parameters ----------------------------------------------------------------------
    def _check_choices(self) -> None:
        for param in PARAMETERS:
            if param.choices and self.config[param.name] not in param.choices:
                raise NodeConfigError(
                    f"parameter {param.name}={self.config[param.name]!r}: must be one of "
                    f"{', '.join(param.choices)}")

    def _on_set_parameters(self, params) -> SetParametersResult:
        # Ranges and read_only are enforced by rclpy from the descriptors.
        for param in params:
            if param.name in self.config:
                self.config[param.name] = param.value
        return SetParametersResult(successful=True)

    # -- input (executor thread): validate, then hand over the newest frame ----------------
    def _on_image(self, msg: Image) -> None:
        self._accept(msg, check_image)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._accept(msg, check_compressed)

    def _accept(self, msg, check) -> None:
        received = time.perf_counter()
        self.tracker.count("received")
        self._record_since_stamp("age", msg.header)
        try:
            check(msg)
        except ImageConversionError as exc:
            self._reject(exc)
            return
        if self._slot.put(Frame(msg, received)):
            self.tracker.count("dropped")

    def _reject(self, exc: Exception) -> None:
        self.tracker.count("rejected")
        self.get_logger().warning(
            f"rejected input frame: {exc} ({self.tracker.counter('rejected')} rejected so far)",
            throttle_duration_sec=LOG_THROTTLE_S)

    def _record_since_stamp(self, stage: str, header) -> None:
        """now - header.stamp on the node's clock (sim time aware); unstamped frames skip."""
        stamp = stamp_ns(header.stamp)
        if stamp > 0:
            self.tracker.record(stage, (self.get_clock().now().nanoseconds - stamp) * 1e-9)

    # -- worker thread: decode -> Segmenter -> publish ----------------------------------------
    def _work(self) -> None:
        while True:
            frame = self._slot.take()
            if frame is None:
                return
            try:
                self._process(frame)
            except ImageConversionError as exc:  # compressed bytes that do not decode
                self._reject(exc)
            except Exception as exc:  # noqa: BLE001 - a failed inference must not end the node
                if self._stopping:
                    return
                self.tracker.count("failed")
                self.get_logger().error(
                    f"segmentation failed on a frame: {type(exc).__name__}: {exc} "
                    f"({self.tracker.counter('failed')} failures so far)",
                    throttle_duration_sec=LOG_THROTTLE_S)

    def _process(self, frame: Frame) -> None:
        tracker, seg = self.tracker, self.segmenter
        tracker.record("wait", time.perf_counter() - frame.received)
        with tracker.measure("decode"):
            rgb = self._decode(frame.msg)
        with tracker.measure("preprocess"):
            batch = seg.preprocess(rgb)
        with tracker.measure("inference"):
            ids = seg.infer(batch)[0]
        with tracker.measure("postprocess"):
            mask = seg.postprocess(ids, rgb.shape[:2])
        with tracker.measure("publish"):
            self._publish(frame.msg.header, rgb, mask)
        tracker.record("node", time.perf_counter() - frame.received)
        self._record_since_stamp("end_to_end", frame.msg.header)
        tracker.count("processed")

    @staticmethod
    def _decode(msg) -> Any:
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb(msg)
        return to_rgb(*image_to_numpy(msg))

    def _publish(self, header, rgb, mask) -> None:
        self.class_pub.publish(numpy_to_image(mask, "mono8", header))
        cfg = self.config
        if cfg["publish_color_mask"] and self.color_pub.get_subscription_count() > 0:
            self.color_pub.publish(numpy_to_image(self.segmenter.colorize(mask), "rgb8", header))
            self.tracker.count("color_published")
        if cfg["publish_overlay"] and self.overlay_pub.get_subscription_count() > 0:
            blend = self.segmenter.overlay(rgb, mask, cfg["overlay_alpha"])
            self.overlay_pub.publish(numpy_to_image(blend, "rgb8", header))
            self.tracker.count("overlay_published")

    # -- reporting ------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        summary = self.tracker.summary()
        array = build_diagnostics(summary, self.get_clock().now().to_msg(),
                                  name=self.get_fully_qualified_name(),
                                  hardware_id=self.segmenter.device,
                                  previous=self._previous_summary)
        self.diagnostics_pub.publish(array)
        self._previous_summary = summary

    def close(self) -> None:
        """Stop the worker, then log the summary (and write stats_file)."""
        self._stopping = True
        self._slot.close()
        self._worker.join(timeout=10.0)
        line = f"summary: {self.tracker.format_summary()}"
        if self.context.ok():
            self.get_logger().info(line)
        else:  # after SIGINT/SIGTERM the context is gone and /rosout with it
            print(f"[INFO] [{self.get_name()}]: {line}", file=sys.stderr, flush=True)
        if self.config["stats_file"]:
            path = Path(self.config["stats_file"])
            path.parent.mkdir(parents=True, exist_ok=True)
            summary = self.tracker.summary()
            summary["model_path"] = self.config["model_path"]
            summary["input_size"] = [self.config["input_height"], self.config["input_width"]]
            summary["device"] = self.segmenter.device
            path.write_text(json.dumps(summary, indent=2) + "\n")


def main(args: list[str] | None = None) -> int:
    """Console script `segmentation_node`; returns the exit status (0 after SIGINT/SIGTERM)."""
    rclpy.init(args=args)
    try:
        node = SegmentationNode()
    except Exception as exc:  # noqa: BLE001 - a node that cannot start says why in one line
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal that lands while the executor builds its wait set surfaces as an
        # RCLError ("context is not valid") instead of ExternalShutdownException.
        if node.context.ok():
            raise
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
