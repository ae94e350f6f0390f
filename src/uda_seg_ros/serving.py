"""What both segmentation nodes do, for the rclpy node that owns the topics.

`SegmentationServer` holds the model, the topics and the FramePipeline of one node, in
the steps of a managed node's life (the plain node runs configure + activate at once):

    server = SegmentationServer(node, managed=False)
    server.configure(read_settings(node))  # load + warm the model, publishers, /diagnostics
    server.activate()                      # subscribe; frames are processed
    server.deactivate()                    # frames are counted (received, inactive), not processed
    server.cleanup()                       # worker stopped, topics destroyed, model freed
    server.close()                         # summary line and stats_file (also after cleanup)

Topics: with `image_topics` empty, input `image` (or `image/compressed`) and outputs
`segmentation/{class_mask,color_mask,overlay}` in the node's namespace, as remapping
expects; with `image_topics` [`<ns>/<name>`, ...], the outputs of each input go to
`<ns>/segmentation/...` beside it, and frames waiting together run as one batch.
"""
from __future__ import annotations

import gc
import json
import sys
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from uda_seg_core.reporting import atomic_write_text
from uda_seg_ros.conversions import (
    check_compressed,
    check_image,
    compressed_to_rgb,
    image_to_numpy,
    numpy_to_image,
    to_rgb,
)
from uda_seg_ros.diagnostics import build_diagnostics
from uda_seg_ros.parameters import inference_config, network_size
from uda_seg_ros.pipeline import FramePipeline, release_memory

LOG_THROTTLE_S = 2.0
OUTPUTS = ("class_mask", "color_mask", "overlay")


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class Camera:
    """One input topic and the three output publishers that answer it."""

    topic: str
    outputs: dict[str, Any]  # OUTPUTS name -> publisher


def output_prefix(resolved_topic: str) -> str:
    """'/front/image_raw' -> '/front/segmentation/'; '/image' -> '/segmentation/'."""
    return resolved_topic.rsplit("/", 1)[0] + "/segmentation/"


class SegmentationServer:
    """Model, topics and pipeline of one segmentation node (see the module docstring)."""

    def __init__(self, node: Node, managed: bool = False):
        self.node = node
        self.name = node.get_name()  # kept: after a shutdown the node's handle may be gone
        self.managed = managed
        self.settings: dict[str, Any] | None = None
        self.segmenter = None
        self.pipeline: FramePipeline | None = None
        self.cameras: list[Camera] = []
        self._subscriptions: list[Any] = []
        self._diagnostics_pub = None
        self._timer = None
        self._previous_summary: dict | None = None
        self.device = ""  # where the model ran (kept after cleanup, for the summary)
        self.input_size: list[int] = []  # [height, width] it ran at (likewise)

    # -- life ----------------------------------------------------------------------------
    def configure(self, settings: dict[str, Any]) -> None:
        """Load and warm the model, create the publishers and the /diagnostics timer."""
        self.settings = settings
        self.cameras = self._make_cameras(settings)  # before the model: topic errors first
        self.node.get_logger().info(f"loading {settings['model_path']}")
        # Imported only now: torch takes seconds to import, and a wrong parameter should
        # fail at once.
        from uda_seg_core.inference import Segmenter

        cfg = inference_config(settings)
        self.segmenter = Segmenter.from_checkpoint(
            settings["model_path"], cfg.device, cfg.precision, network_size(settings),
            cfg.output_size, cfg.backend, threads=cfg.threads)
        self.segmenter.warmup(settings["warmup_iters"])
        self.device = self.segmenter.device
        self.input_size = list(self.segmenter.input_size)
        self.pipeline = FramePipeline(
            [camera.topic for camera in self.cameras], decode=self._decode,
            segment=self.segmenter.segment_batch, publish=self._publish, check=self._check,
            stamp_age=self._stamp_age, warn=self._warn, error=self._error,
            stopping=lambda: not self.node.context.ok(), window=settings["stats_window"])
        self._diagnostics_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._previous_summary = None
        if settings["stats_period"] > 0:
            self._timer = self.node.create_timer(settings["stats_period"],
                                                 self._publish_diagnostics)
        self.pipeline.start()

    def activate(self) -> None:
        """Subscribe (the first time) and process frames."""
        if not self._subscriptions:
            self._subscribe()
        self.pipeline.active = True
        seg, cfg = self.segmenter, self.settings
        self.node.get_logger().info(
            f"ready: {cfg['model_path']} ({seg.backend.name} on {seg.device}, {cfg['precision']}), "
            f"network {seg.input_size[1]}x{seg.input_size[0]}, listening on "
            f"{', '.join(self._input_topics())} ({cfg['input_transport']}, {cfg['input_qos']} QoS)")

    def deactivate(self) -> None:
        """Keep the subscriptions, count frames, process none."""
        if self.pipeline is not None:
            self.pipeline.active = False

    def cleanup(self) -> None:
        """Stop the worker, destroy topics and timer, free the model (the statistics stay
        for `close`)."""
        if self.pipeline is not None:
            self.pipeline.stop()
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        for camera in self.cameras:
            for pub in camera.outputs.values():
                self._destroy_publisher(pub)
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
        if self._diagnostics_pub is not None:
            self.node.destroy_publisher(self._diagnostics_pub)
        self._subscriptions, self.cameras = [], []
        self._timer = self._diagnostics_pub = None
        self.segmenter = None
        gc.collect()
        release_memory()

    def close(self) -> None:
        """Stop the worker, log the summary line and write stats_file (if set)."""
        if self.pipeline is None:
            return
        self.pipeline.stop()
        line = f"summary: {self.pipeline.format_summary()}"
        if self.node.context.ok():
            self.node.get_logger().info(line)
        else:  # after SIGINT/SIGTERM the context is gone and /rosout with it
            print(f"[INFO] [{self.name}]: {line}", file=sys.stderr, flush=True)
        if self.settings["stats_file"]:
            self._write_stats(self.settings["stats_file"])

    # -- topics --------------------------------------------------------------------------
    def _make_cameras(self, settings: dict[str, Any]) -> list[Camera]:
        qos = QoSProfile(depth=1)
        if not settings["image_topics"]:
            # Like image_transport: remapping 'image' moves 'image/compressed' with it; the
            # outputs stay in the node's namespace.
            topics, prefixes = [self.node.resolve_topic_name("image")], ["segmentation/"]
        else:
            topics = [self.node.resolve_topic_name(t) for t in settings["image_topics"]]
            prefixes = [output_prefix(topic) for topic in topics]
            if len(set(prefixes)) != len(prefixes):
                raise ValueError(f"image_topics {topics}: two inputs in one namespace would "
                                 f"publish to the same segmentation/ topics; give each camera "
                                 f"its own namespace")
        create = (self.node.create_lifecycle_publisher if self.managed
                  else self.node.create_publisher)
        return [Camera(topic, {name: create(Image, prefix + name, qos) for name in OUTPUTS})
                for topic, prefix in zip(topics, prefixes)]

    def _input_topics(self) -> list[str]:
        suffix = "/compressed" if self.settings["input_transport"] == "compressed" else ""
        return [camera.topic.rstrip("/") + suffix for camera in self.cameras]

    def _subscribe(self) -> None:
        cfg = self.settings
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1,
            reliability=(ReliabilityPolicy.BEST_EFFORT if cfg["input_qos"] == "sensor_data"
                         else ReliabilityPolicy.RELIABLE))
        kind = CompressedImage if cfg["input_transport"] == "compressed" else Image
        for index, topic in enumerate(self._input_topics()):
            self._subscriptions.append(self.node.create_subscription(
                kind, topic, lambda msg, i=index: self.pipeline.submit(i, msg), qos))

    def _destroy_publisher(self, pub) -> None:
        if self.managed:
            self.node.destroy_lifecycle_publisher(pub)
        else:
            self.node.destroy_publisher(pub)

    # -- the pipeline's callables ----------------------------------------------------------
    def _check(self, index: int, msg) -> None:
        budget = self.settings["max_input_pixels"]
        if isinstance(msg, CompressedImage):
            check_compressed(msg, max_pixels=budget)
        else:
            check_image(msg, max_pixels=budget)

    def _decode(self, index: int, msg):
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb(msg, max_pixels=self.settings["max_input_pixels"])
        return to_rgb(*image_to_numpy(msg))

    def _publish(self, index: int, msg, rgb, mask) -> None:
        outputs, cfg, header = self.cameras[index].outputs, self.settings, msg.header
        outputs["class_mask"].publish(numpy_to_image(mask, "mono8", header))
        if cfg["publish_color_mask"] and outputs["color_mask"].get_subscription_count() > 0:
            outputs["color_mask"].publish(
                numpy_to_image(self.segmenter.colorize(mask), "rgb8", header))
            self.pipeline.count(index, "color_published")
        if cfg["publish_overlay"] and outputs["overlay"].get_subscription_count() > 0:
            blend = self.segmenter.overlay(rgb, mask, cfg["overlay_alpha"])
            outputs["overlay"].publish(numpy_to_image(blend, "rgb8", header))
            self.pipeline.count(index, "overlay_published")

    def _stamp_age(self, msg) -> float | None:
        """now - header.stamp on the node's clock (sim time aware); None when unstamped."""
        stamp = stamp_ns(msg.header.stamp)
        if stamp <= 0:
            return None
        return (self.node.get_clock().now().nanoseconds - stamp) * 1e-9

    def _warn(self, text: str) -> None:
        self.node.get_logger().warning(text, throttle_duration_sec=LOG_THROTTLE_S)

    def _error(self, text: str) -> None:
        self.node.get_logger().error(text, throttle_duration_sec=LOG_THROTTLE_S)

    # -- reporting -------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        summary = self.pipeline.summary()
        array = build_diagnostics(summary, self.node.get_clock().now().to_msg(),
                                  name=self.node.get_fully_qualified_name(),
                                  hardware_id=self.device,
                                  previous=self._previous_summary)
        self._diagnostics_pub.publish(array)
        self._previous_summary = summary

    def stats(self) -> dict:
        """The summary written to stats_file."""
        cfg = self.settings
        summary = self.pipeline.summary()
        summary["model_path"] = cfg["model_path"]
        summary["input_size"] = self.input_size
        summary["device"] = self.device
        return summary

    def _write_stats(self, path: str) -> None:
        """Atomically (temp file + rename); if even that fails, the JSON goes to the log."""
        text = json.dumps(self.stats(), indent=2) + "\n"
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            print(f"[ERROR] [{self.name}]: cannot write stats_file={path} "
                  f"({exc.strerror or exc}); the statistics: {json.dumps(self.stats())}",
                  file=sys.stderr, flush=True)
