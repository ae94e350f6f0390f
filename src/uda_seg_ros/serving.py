"""What both segmentation nodes do, for the rclpy node that owns the topics.

`SegmentationServer` holds the model, the topics and the FramePipeline of one node, in
the steps of a managed node's life (the plain node runs configure + activate at once):

    server = SegmentationServer(node, managed=False)
    server.configure(read_settings(node))  # load + warm the model, publishers, /diagnostics
    server.activate()                      # subscribe; frames are processed
    server.deactivate()                    # frames are counted (received, inactive), not processed
    server.cleanup()                       # worker stopped, topics destroyed, model freed
    server.close()                         # summary line and stats_file (also after cleanup)

Topics: with `image_topics` empty, input `image` (or `image/compressed`) and its
`camera_info` beside it, outputs `segmentation/{class_mask,color_mask,overlay,confidence,
camera_info,label_info}` in the node's namespace, as remapping expects; with
`image_topics` [`<ns>/<name>`, ...], the outputs of each input go to `<ns>/segmentation/...`
beside it, and frames waiting together run as one batch. Image topics take rclpy's
parameter-driven QoS overrides (`qos_overrides.<topic>.<publisher|subscription>.<policy>`).
"""
from __future__ import annotations

import gc
import json
import sys
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from uda_seg_core.inference.segmenter import Segmenter
from uda_seg_core.reporting import atomic_write_text
from uda_seg_ros.camera_info import MaskCameraInfoError, camera_info_topic, mask_camera_info
from uda_seg_ros.conversions import (
    check_compressed,
    check_image,
    compressed_to_rgb,
    image_to_numpy,
    numpy_to_image,
    probability_to_mono8,
    to_rgb,
)
from uda_seg_ros.diagnostics import build_diagnostics
from uda_seg_ros.label_info import LABEL_INFO_TYPE, label_info_message
from uda_seg_ros.parameters import inference_config, network_size
from uda_seg_ros.pipeline import FramePipeline, release_memory

LOG_THROTTLE_S = 2.0
# Managed (lifecycle) publishers of each camera: silent while the node is inactive.
OUTPUTS = {"class_mask": Image, "color_mask": Image, "overlay": Image,
           "camera_info": CameraInfo}
# Published once per configure and kept for late subscribers.
LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def qos_overrides() -> QoSOverridingOptions:
    """history, depth and reliability of a topic settable by parameters (rclpy, Humble on)."""
    return QoSOverridingOptions.with_default_policies()


@dataclass
class Camera:
    """One input topic, its camera_info, and the publishers that answer it."""

    topic: str  # the input image topic (its base name: 'compressed' adds /compressed)
    prefix: str  # where its outputs go
    outputs: dict[str, Any]  # OUTPUTS name -> publisher
    confidence: Any = None  # segmentation/confidence publisher, when the model has one
    labels: Any = None  # segmentation/label_info publisher (latched)
    info: CameraInfo | None = None  # the newest CameraInfo of the input camera

    @property
    def info_topic(self) -> str:
        return camera_info_topic(self.topic)


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
        self.segmenter: Segmenter | None = None
        self.pipeline: FramePipeline | None = None
        self.cameras: list[Camera] = []
        self._subscriptions: list[Any] = []
        self._diagnostics_pub = None
        self._timer = None
        self._previous_summary: dict | None = None
        self._model_values: list[tuple[str, str]] = []
        self.device = ""  # where the model ran (kept after cleanup, for the summary)
        self.input_size: list[int] = []  # [height, width] it ran at (likewise)

    # -- life ----------------------------------------------------------------------------
    def configure(self, settings: dict[str, Any]) -> None:
        """Load and warm the model, create the publishers and the /diagnostics timer."""
        self.settings = settings
        self.cameras = self._make_cameras(settings)  # before the model: topic errors first
        self.node.get_logger().info(f"loading {settings['model_path']}")
        cfg = inference_config(settings)
        self.segmenter = Segmenter.from_checkpoint(
            settings["model_path"], cfg.device, cfg.precision, network_size(settings),
            cfg.output_size, cfg.backend, threads=cfg.threads,
            resize_mode=settings["resize_mode"])
        self.segmenter.warmup(settings["warmup_iters"])
        self.device = self.segmenter.device
        self.input_size = list(self.segmenter.input_size)
        self._offer_confidence()
        self._publish_label_info()
        self._model_values = self._describe_model()
        self.pipeline = FramePipeline(
            [camera.topic for camera in self.cameras], decode=self._decode,
            segment=self._segment, publish=self._publish, check=self._check,
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
            f"network {seg.input_size[1]}x{seg.input_size[0]} ({seg.resize_mode}), "
            f"{len(seg.class_names)} classes, listening on "
            f"{', '.join(self._input_topics())} ({cfg['image_transport']}, {cfg['input_qos']} QoS)")

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
            for pub in [*camera.outputs.values(), camera.confidence]:
                if pub is not None:
                    self._destroy_publisher(pub)
            if camera.labels is not None:
                self.node.destroy_publisher(camera.labels)
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
        if not settings["image_topics"]:
            # Like image_transport: remapping 'image' moves 'image/compressed' and the
            # camera_info beside it; the outputs stay in the node's namespace.
            topics, prefixes = [self.node.resolve_topic_name("image")], ["segmentation/"]
        else:
            topics = [self.node.resolve_topic_name(t) for t in settings["image_topics"]]
            prefixes = [output_prefix(topic) for topic in topics]
            if len(set(prefixes)) != len(prefixes):
                raise ValueError(f"image_topics {topics}: two inputs in one namespace would "
                                 f"publish to the same segmentation/ topics; give each camera "
                                 f"its own namespace")
        return [Camera(topic, prefix, {name: self._create_output(kind, prefix + name)
                                       for name, kind in OUTPUTS.items()})
                for topic, prefix in zip(topics, prefixes)]

    def _create_output(self, kind, topic: str):
        create = (self.node.create_lifecycle_publisher if self.managed
                  else self.node.create_publisher)
        return create(kind, topic, QoSProfile(depth=1),
                      qos_overriding_options=qos_overrides())

    def _offer_confidence(self) -> None:
        """segmentation/confidence for each camera, when the model gives probabilities."""
        seg = self.segmenter
        if not seg.has_confidence:
            self.node.get_logger().info(f"segmentation/confidence not offered: "
                                        f"{seg.confidence_note}")
            return
        for camera in self.cameras:
            camera.confidence = self._create_output(Image, camera.prefix + "confidence")

    def _publish_label_info(self) -> None:
        """The class names (and colours) once, latched, beside each camera's masks."""
        seg = self.segmenter
        header = Header(stamp=self.node.get_clock().now().to_msg())
        for camera in self.cameras:
            camera.labels = self.node.create_publisher(LABEL_INFO_TYPE,
                                                       camera.prefix + "label_info", LATCHED)
            camera.labels.publish(label_info_message(seg.class_names, seg.palette, header))

    def _describe_model(self) -> list[tuple[str, str]]:
        """What is served, for /diagnostics."""
        seg = self.segmenter
        return [
            ("model", self.settings["model_path"]), ("backend", seg.backend.name),
            ("network_size", f"{seg.input_size[1]}x{seg.input_size[0]}"),
            ("resize_mode", seg.resize_mode), ("output_size", seg.output_size),
            ("num_classes", str(len(seg.class_names))),
            ("class_names", json.dumps(list(seg.class_names))),
            ("label_set", seg.label_set_name),
            ("confidence", "offered" if seg.has_confidence else seg.confidence_note),
        ]

    def _input_topics(self) -> list[str]:
        suffix = "/compressed" if self.settings["image_transport"] == "compressed" else ""
        return [camera.topic.rstrip("/") + suffix for camera in self.cameras]

    def _input_qos(self) -> QoSProfile:
        """A fresh profile per entity: rclpy's QoS overrides change the one they are given."""
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1,
            reliability=(ReliabilityPolicy.BEST_EFFORT
                         if self.settings["input_qos"] == "sensor_data"
                         else ReliabilityPolicy.RELIABLE))

    def _subscribe(self) -> None:
        kind = CompressedImage if self.settings["image_transport"] == "compressed" else Image
        for index, (camera, topic) in enumerate(zip(self.cameras, self._input_topics())):
            self._subscriptions.append(self.node.create_subscription(
                kind, topic, lambda msg, i=index: self.pipeline.submit(i, msg),
                self._input_qos(), qos_overriding_options=qos_overrides()))
            self._subscriptions.append(self.node.create_subscription(
                CameraInfo, camera.info_topic, lambda msg, c=camera: setattr(c, "info", msg),
                self._input_qos(), qos_overriding_options=qos_overrides()))

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

    def _confidence_wanted(self) -> bool:
        return self.settings["publish_confidence"] and any(
            camera.confidence is not None and camera.confidence.get_subscription_count() > 0
            for camera in self.cameras)

    def _segment(self, frames, timer) -> list[tuple[Any, Any]]:
        """(mask, confidence or None) per frame: the probabilities only while someone
        subscribes to a confidence topic (the ids-only run is the fast path)."""
        if self._confidence_wanted():
            return self.segmenter.segment_batch_with_confidence(frames, timer)
        return [(mask, None) for mask in self.segmenter.segment_batch(frames, timer)]

    def _publish(self, index: int, msg, rgb, result) -> None:
        mask, confidence = result
        camera, cfg, header = self.cameras[index], self.settings, msg.header
        outputs = camera.outputs
        outputs["class_mask"].publish(numpy_to_image(mask, "mono8", header))
        if camera.info is not None:
            self._publish_camera_info(camera, header, rgb.shape[:2])
        if confidence is not None:
            self.pipeline.count(index, "confidence_computed")
            if camera.confidence.get_subscription_count() > 0:
                camera.confidence.publish(numpy_to_image(probability_to_mono8(confidence),
                                                         "mono8", header))
                self.pipeline.count(index, "confidence_published")
        if cfg["publish_color_mask"] and outputs["color_mask"].get_subscription_count() > 0:
            outputs["color_mask"].publish(
                numpy_to_image(self.segmenter.colorize(mask), "rgb8", header))
            self.pipeline.count(index, "color_published")
        if cfg["publish_overlay"] and outputs["overlay"].get_subscription_count() > 0:
            blend = self.segmenter.overlay(rgb, mask, cfg["overlay_alpha"])
            outputs["overlay"].publish(numpy_to_image(blend, "rgb8", header))
            self.pipeline.count(index, "overlay_published")

    def _publish_camera_info(self, camera: Camera, header, frame_hw) -> None:
        try:
            info = mask_camera_info(camera.info, self.segmenter.output_placement(frame_hw),
                                    header, frame_hw)
        except MaskCameraInfoError as exc:
            self._warn(f"segmentation/camera_info not published for {camera.topic}: {exc}")
            return
        camera.outputs["camera_info"].publish(info)

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
                                  previous=self._previous_summary, model=self._model_values)
        self._diagnostics_pub.publish(array)
        self._previous_summary = summary

    def stats(self) -> dict:
        """The summary written to stats_file."""
        cfg = self.settings
        summary = self.pipeline.summary()
        summary["model_path"] = cfg["model_path"]
        summary["input_size"] = self.input_size
        summary["resize_mode"] = cfg["resize_mode"]
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
