"""The segmentation nodes' parameters: one table, its descriptors, and the checks.

Both nodes (`segmentation_node`, `segmentation_lifecycle_node`) declare `PARAMETERS`.
The inference settings take their defaults and choices from
`uda_seg_core.config.InferenceConfig` (the one definition; config/segment.yaml must agree,
test_launch.py checks it), and `inference_config` turns the parameters back into an
InferenceConfig through the config's own strict checks.

    declare_parameters(node)           # + a warning for each unknown key given to the node
    settings = read_settings(node)     # dict; NodeConfigError names a bad value and the fix
    cfg = inference_config(settings)   # InferenceConfig for Segmenter.from_config

A renamed parameter (`DEPRECATED`: input_transport -> image_transport) is still accepted
under its old name, with a warning that names the new one.
"""
from __future__ import annotations

import difflib
import os
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from uda_seg_core.config import ConfigError, InferenceConfig, merge
from uda_seg_core.inference.segmenter import RESIZE_MODES
from uda_seg_ros.conversions import DEFAULT_MAX_INPUT_PIXELS

NODE_NAME = "uda_segmentation"
MIN_STATS_PERIOD = 0.1  # s; below this /diagnostics costs more than the node's own work
_INFERENCE = InferenceConfig()
_HINTS = typing.get_type_hints(InferenceConfig)


def _choices(field: str) -> tuple[str, ...]:
    return tuple(typing.get_args(_HINTS[field]))


class NodeConfigError(ValueError):
    """A parameter value the node cannot start with."""


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
    Param("device", _INFERENCE.device, "auto (cuda if available) | cpu | cuda | cuda:N"),
    Param("precision", _INFERENCE.precision, "fp16 runs on CUDA only",
          choices=_choices("precision")),
    Param("backend", _INFERENCE.backend,
          "inference backend; auto picks it from the model file extension"),
    Param("input_width", 0, "network input width in pixels; 0 (with input_height 0): the "
          "size the model file records (uda-seg deploy/export metadata, a checkpoint's "
          "inference.input_size), else 480x360", range=(0, 8192)),
    Param("input_height", 0, "network input height in pixels; 0 (with input_width 0): the "
          "model's own", range=(0, 8192)),
    Param("output_size", _INFERENCE.output_size, "input: masks on the image's pixels "
          "(nearest); network: masks at the network size", choices=_choices("output_size")),
    Param("resize_mode", "letterbox", "how a frame becomes the network input: letterbox keeps "
          "the aspect ratio and pads (the mask is cut back to the image); crop keeps it and "
          "takes the centre (mask 255 outside it); stretch resizes to the network size",
          choices=RESIZE_MODES),
    Param("overlay_alpha", 0.5, "weight of the colour mask in the overlay", range=(0.0, 1.0),
          dynamic=True),
    Param("publish_color_mask", True, "publish segmentation/color_mask while it has subscribers",
          dynamic=True),
    Param("publish_overlay", True, "publish segmentation/overlay while it has subscribers",
          dynamic=True),
    Param("publish_confidence", True, "publish segmentation/confidence (mono8, the top class's "
          "probability x 255) while it has subscribers; offered when the model gives "
          "probabilities", dynamic=True),
    Param("image_topics", [], "camera topics served by this one model, e.g. "
          "[/front/image_raw, /rear/image_raw]; outputs go to <ns>/segmentation/... beside each "
          "input; empty: the single topic 'image', outputs in the node's namespace"),
    Param("image_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
          "sensor_msgs/CompressedImage (jpeg/png) on 'image/compressed'",
          choices=("raw", "compressed")),
    Param("input_qos", "sensor_data", "sensor_data: best effort, depth 1 (cameras); reliable: "
          "reliable, depth 1 (bags, reliable publishers); qos_overrides.<topic>.subscription."
          "<policy> parameters override either", choices=("sensor_data", "reliable")),
    Param("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS, "largest input frame (width x height) "
          "accepted; larger ones are rejected before decoding (default 4096x4096)",
          range=(1, 1 << 31)),
    Param("stats_period", 5.0, f"seconds between /diagnostics reports: 0 (none) or at least "
          f"{MIN_STATS_PERIOD}", range=(0.0, 3600.0)),
    Param("stats_window", 300, "frames in the rolling latency window", range=(1, 1_000_000)),
    Param("warmup_iters", 3, "network runs on a blank frame before the first image",
          range=(0, 1000)),
    Param("stats_file", "", "JSON file for the latency summary written at shutdown ('' = none)"),
)
NAMES = tuple(param.name for param in PARAMETERS)
# old name -> new name: still accepted, with a warning
DEPRECATED = {"input_transport": "image_transport"}
_KINDS = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_STRING_ARRAY}


def descriptor(param: Param) -> ParameterDescriptor:
    """A ParameterDescriptor saying what the parameter is, its choices and range."""
    desc = ParameterDescriptor(name=param.name, type=_KINDS[type(param.default)],
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


def declare_parameters(node: Node) -> list[str]:
    """Declare PARAMETERS on `node`; warn once about each key it was given that is none of
    its parameters (a typo in a params file or a -p). Returns those keys."""
    for param in PARAMETERS:
        # An empty list cannot tell rclpy its type: declare a string array by type alone.
        default = Parameter.Type.STRING_ARRAY if param.default == [] else param.default
        node.declare_parameter(param.name, default, descriptor(param))
    given = _given(node)
    for old, new in DEPRECATED.items():
        if old in given:
            node.declare_parameter(old, Parameter.Type.STRING, ParameterDescriptor(
                name=old, type=ParameterType.PARAMETER_STRING, read_only=True,
                description=f"deprecated: the old name of {new}"))
            node.get_logger().warning(f"parameter '{old}' is deprecated: use '{new}' (the "
                                      f"name image_transport's nodes use); '{old}' still works")
    unknown = unknown_keys(node)
    for key in unknown:
        node.get_logger().warning(f"unknown parameter '{key}' ignored{nearest(key)}; this node's "
                                  f"parameters: {', '.join(NAMES)}")
    return unknown


def unknown_keys(node: Node) -> list[str]:
    """Keys given to the node (params files, -p) that it did not declare."""
    return sorted(key for key in _given(node)
                  if not node.has_parameter(key) and not key.startswith("qos_overrides."))


def _given(node: Node) -> dict:
    # rclpy keeps the overrides it was started with here (Humble to Kilted); there is no
    # public accessor, and undeclared ones are dropped without a word.
    return getattr(node, "_parameter_overrides", {}) or {}


def nearest(key: str) -> str:
    match = difflib.get_close_matches(key, NAMES, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def read_settings(node: Node) -> dict[str, Any]:
    """The declared parameters' values, checked (NodeConfigError names the problem)."""
    settings = {name: _value(node, name) for name in NAMES}
    settings["image_topics"] = list(settings["image_topics"] or [])
    given = _given(node)
    for old, new in DEPRECATED.items():
        if node.has_parameter(old):
            settings[new] = renamed(old, _value(node, old), new, settings[new], new in given)
    check_settings(settings)
    return settings


def renamed(old: str, old_value: Any, new: str, new_value: Any, new_given: bool) -> Any:
    """The value of parameter `new` when the deprecated `old` was given too: the old one's,
    unless `new` was given a value of its own (not its default, which the installed
    params file sets) that differs."""
    param = next(p for p in PARAMETERS if p.name == new)
    if param.choices and old_value not in param.choices:
        raise NodeConfigError(f"parameter {old}={old_value!r} (the deprecated name of {new}): "
                              f"must be one of {', '.join(param.choices)}")
    if new_given and new_value != param.default and new_value != old_value:
        raise NodeConfigError(f"parameters {new}={new_value!r} and {old}={old_value!r} (its "
                              f"deprecated name) disagree: set {new} only")
    return old_value


def _value(node: Node, name: str) -> Any:
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:  # a string array declared by type, never set
        return None


def check_settings(settings: dict[str, Any]) -> None:
    """What descriptors cannot say: choices, the stats_period bound, the model file, the
    stats file's folder; and everything InferenceConfig checks. Reads no model."""
    for param in PARAMETERS:
        if param.choices and settings[param.name] not in param.choices:
            raise NodeConfigError(f"parameter {param.name}={settings[param.name]!r}: must be one "
                                  f"of {', '.join(param.choices)}")
    period = float(settings["stats_period"])
    if 0.0 < period < MIN_STATS_PERIOD:
        raise NodeConfigError(f"parameter stats_period={period:g}: must be 0 (no /diagnostics) "
                              f"or at least {MIN_STATS_PERIOD} s")
    inference_config(settings)
    topics = settings["image_topics"]
    if any(not str(topic).strip() for topic in topics) or len(set(topics)) != len(topics):
        raise NodeConfigError(f"parameter image_topics={topics}: topics must be non-empty and "
                              f"distinct")
    if not settings["model_path"]:
        raise NodeConfigError("parameter model_path is empty: pass -p model_path:=<checkpoint "
                              ".pt or exported .onnx> (or model_path:=... to the launch file)")
    if not Path(settings["model_path"]).is_file():
        raise NodeConfigError(f"model_path: model file not found: {settings['model_path']}")
    if settings["stats_file"]:
        check_writable(settings["stats_file"])


def inference_config(settings: dict[str, Any]) -> InferenceConfig:
    """The InferenceConfig the parameters describe, through the config's strict checks."""
    values = {key: settings[key] for key in ("device", "precision", "backend", "output_size")}
    size = network_size(settings)
    if size is not None:
        values["input_size"] = size
    try:
        return merge(InferenceConfig(), values)
    except ConfigError as exc:
        raise NodeConfigError(f"parameter {exc}") from None


def network_size(settings: dict[str, Any]) -> list[int] | None:
    """[height, width] the parameters ask the network to run at; None (both 0): the size
    the model file records (Segmenter's default)."""
    size = [int(settings["input_height"]), int(settings["input_width"])]
    if size == [0, 0]:
        return None
    if 0 in size:
        raise NodeConfigError(f"parameters input_height={size[0]}, input_width={size[1]}: set "
                              f"both (the network size) or neither (0, 0: the model's own)")
    return size


def check_writable(path: str) -> None:
    """stats_file must be a file path in a folder this process can write (created if
    missing); checked at start so the summary is never lost at shutdown."""
    target = Path(path)
    if target.is_dir():
        raise NodeConfigError(f"parameter stats_file={path}: is a directory; give a file path, "
                              f"e.g. stats_file:={target / 'segmentation_stats.json'}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe",
                                     dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NodeConfigError(f"parameter stats_file={path}: cannot write in {target.parent}: "
                              f"{exc.strerror or exc}") from None
