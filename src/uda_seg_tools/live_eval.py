"""`uda-seg-bag evaluate`: live mIoU of a running segmentation node against a bag's labels.

    uda-seg-bag evaluate --expect 24 --out runs/demo/live.json &
    segmentation_node --ros-args -p model_path:=model.pt
    uda-seg-bag play runs/demo/camvid_test_bag --remap /camera/image_raw:=image

The evaluator subscribes to the ground truth (`/camera/labels`, mono8 class ids, written
by `uda-seg-bag write`) and to the node's `segmentation/class_mask` (mono8), pairs the
two by header stamp (the node copies the input header; the player gives an image and
its label the same stamp), and accumulates one ConfusionMatrix over the matched frames
(written out with the result, so it can be compared with `uda-seg evaluate`'s).
A mask must have the label's size: the node's default `output_size: input` resizes the
mask back to the image size; a mask of another size is counted as `size_mismatch` and
left out rather than resampled, so the live figure is the one `uda-seg evaluate` gives.

It subscribes to the labels only once the mask topic has a publisher, so a player that
waits for a labels subscriber (`uda-seg-bag play` does) starts when no mask can be lost
to discovery any more. It stops when --expect frames were matched, when nothing arrived
for --idle seconds after the first message, after --timeout seconds, or on Ctrl-C, and
prints (and with --out writes as JSON) mIoU, pixel accuracy, per-class IoU, frames
matched / missed, and the end-to-end latency it observed (mask arrival - header stamp,
meaningful when the player restamps to the current time). --node-stats merges the
node's own latency summary (the JSON its `stats_file` parameter writes at shutdown)
when that file exists. --label-set names the classes (camvid12 by default, or the YAML the
model was trained with and the bag written with: its names and headline classes).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAX_PENDING = 512  # unmatched frames kept per side; older ones count as missed
# After the mask publisher is discovered, time for the DDS match with our reader.
DISCOVERY_SETTLE_S = 0.5
# An end-to-end latency above this is a stamp from another clock (e.g. --no-restamp).
PLAUSIBLE_LATENCY_S = 60.0


class LiveEvaluation:
    """Pairs label and mask arrays by stamp and scores the pairs; knows nothing of ROS."""

    def __init__(self, num_classes: int = 12, max_pending: int = MAX_PENDING, label_set=None):
        """`label_set` (a LabelSet, 'camvid12', a YAML path or a record): score its classes
        (names, headline classes) instead of `num_classes` plain ones."""
        # Imported here: uda_seg_core pulls in torch, which `uda-seg-bag play` never needs.
        from uda_seg_core.labels import resolve_label_set
        from uda_seg_core.metrics import ConfusionMatrix

        self.cm = (ConfusionMatrix(num_classes) if label_set is None
                   else ConfusionMatrix.for_label_set(resolve_label_set(label_set)))
        self.max_pending = max_pending
        self.labels: OrderedDict[object, np.ndarray] = OrderedDict()
        self.masks: OrderedDict[object, np.ndarray] = OrderedDict()
        self.matched: set = set()
        self.latencies_ms: list[float] = []
        self.counts = {"labels": 0, "masks": 0, "matched": 0, "size_mismatch": 0,
                       "duplicate_masks": 0, "duplicate_labels": 0, "evicted_labels": 0,
                       "evicted_masks": 0}
        self.first_mismatch = ""
        self.lock = threading.Lock()

    def add_label(self, key, label: np.ndarray) -> None:
        with self.lock:
            if key in self.matched or key in self.labels:
                self.counts["duplicate_labels"] += 1  # e.g. a looped bag played without restamping
                return
            if key in self.masks:
                self._score(key, self.masks.pop(key), label)
            else:
                self._keep(self.labels, key, np.array(label, copy=True), "evicted_labels")
            # Counted last: a Ctrl-C inside this callback leaves the books balanced.
            self.counts["labels"] += 1

    def add_mask(self, key, mask: np.ndarray, latency_s: float | None = None) -> None:
        with self.lock:
            self.counts["masks"] += 1
            if key in self.matched or key in self.masks:
                self.counts["duplicate_masks"] += 1
                return
            if latency_s is not None and 0 <= latency_s < PLAUSIBLE_LATENCY_S:
                self.latencies_ms.append(latency_s * 1e3)
            if key in self.labels:
                self._score(key, mask, self.labels.pop(key))
            else:
                self._keep(self.masks, key, np.array(mask, copy=True), "evicted_masks")

    def _keep(self, table: OrderedDict, key, array: np.ndarray, evicted: str) -> None:
        table[key] = array
        while len(table) > self.max_pending:
            table.popitem(last=False)
            self.counts[evicted] += 1

    def _score(self, key, mask: np.ndarray, label: np.ndarray) -> None:
        self.matched.add(key)
        if mask.shape != label.shape:
            self.counts["size_mismatch"] += 1
            self.first_mismatch = self.first_mismatch or (
                f"mask {mask.shape[1]}x{mask.shape[0]} vs label {label.shape[1]}x{label.shape[0]}: "
                f"run the node with output_size:=input so masks come back at the image size")
            return
        self.cm.update(mask, label)
        self.counts["matched"] += 1

    @property
    def frames_matched(self) -> int:
        with self.lock:
            return self.counts["matched"]

    def result(self) -> dict:
        """JSON-ready: the metrics, the frame accounting and the observed latency."""
        with self.lock:
            counts = dict(self.counts)
            missed = len(self.labels) + counts["evicted_labels"]
            lat = np.array(self.latencies_ms, dtype=np.float64)
            summary = self.cm.summary()
            matrix = self.cm.mat.tolist()
        latency = {"count": int(lat.size)}
        if lat.size:
            p50, p90, p99 = np.percentile(lat, [50, 90, 99])
            latency.update(p50=float(p50), p90=float(p90), p99=float(p99), max=float(lat.max()))
        return {
            "miou": summary["miou"],
            "miou_12": summary["miou_12"],
            "headline_classes": len(self.cm.headline),
            "accuracy": summary["accuracy"],
            "per_class_iou": summary["per_class_iou"],
            "pixels": summary["pixels"],
            "frames_labelled": counts["labels"],
            "masks_received": counts["masks"],
            "frames_matched": counts["matched"],
            "frames_missed": missed,
            "masks_without_label": len(self.masks) + counts["evicted_masks"],
            "size_mismatch": counts["size_mismatch"],
            "size_mismatch_detail": self.first_mismatch,
            "duplicate_masks": counts["duplicate_masks"],
            "duplicate_labels": counts["duplicate_labels"],
            "rejected": counts.get("rejected", 0),
            "e2e_latency_ms": latency,
            "confusion_matrix": matrix,  # rows: label, columns: mask; as `uda-seg evaluate`
        }

    def table(self) -> str:
        return self.cm.table()


def merge_node_stats(result: dict, path: str | Path, wait_s: float = 0.0) -> dict:
    """Add the node's shutdown summary (its `stats_file` JSON) under result['node']."""
    path = Path(path)
    deadline = time.monotonic() + wait_s
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    if path.is_file():
        try:
            result["node"] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            result["node_error"] = f"{path}: not valid JSON ({exc})"
    else:
        result["node_error"] = f"{path} not found (the node writes it at shutdown when its " \
                               f"stats_file parameter is set)"
    return result


def format_result(result: dict) -> str:
    def pct(value):
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else f"{100 * value:.2f}"

    lines = [
        (f"live mIoU {pct(result['miou'])} ({result.get('headline_classes', 11)} classes), "
         f"{pct(result['miou_12'])} ({len(result['per_class_iou'])}), pixel "
         f"accuracy {pct(result['accuracy'])}"),
        (f"frames: {result['frames_matched']} matched, {result['frames_missed']} missed of "
         f"{result['frames_labelled']} labelled; {result['masks_without_label']} masks without "
         f"label; {result['size_mismatch']} size mismatches"),
    ]
    if result["size_mismatch_detail"]:
        lines.append(f"size mismatch: {result['size_mismatch_detail']}")
    lat = result["e2e_latency_ms"]
    if lat["count"]:
        lines.append(f"end-to-end (stamp -> mask received) p50 {lat['p50']:.1f} ms, "
                     f"p99 {lat['p99']:.1f} ms over {lat['count']} frames")
    lines.append("per-class IoU: " + ", ".join(
        f"{name} {pct(v)}" for name, v in result["per_class_iou"].items()))
    return "\n".join(lines)


def mask_qos(kind: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if kind not in ("reliable", "best_effort"):
        raise ValueError(f"--mask-qos must be reliable or best_effort, got {kind!r}")
    reliability = (ReliabilityPolicy.RELIABLE if kind == "reliable"
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=100, reliability=reliability)


def wait_for_mask_publisher(node, executor, topic: str, timeout: float, log) -> bool:
    """Spin until `topic` has a publisher (the node), then a little longer so the match
    with our subscription is complete; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while node.count_publishers(topic) == 0:
        if time.monotonic() > deadline:
            log(f"evaluate: no publisher on {topic} after {timeout:g} s (is the node running, "
                f"and is --mask-topic its segmentation/class_mask?)")
            return False
        executor.spin_once(timeout_sec=0.05)
    settle = time.monotonic() + DISCOVERY_SETTLE_S
    while time.monotonic() < settle:
        executor.spin_once(timeout_sec=0.05)
    return True


def spin_until_done(executor, evaluation: LiveEvaluation, *, start: float,
                    last_message: list[float], timeout: float, idle: float, expect: int,
                    log) -> None:
    """Spin until `expect` frames are scored, `timeout` seconds have passed since `start`,
    or no message arrived for `idle` seconds after the first one."""
    import rclpy

    while rclpy.ok():
        executor.spin_once(timeout_sec=0.1)
        now = time.monotonic()
        if expect and evaluation.frames_matched + evaluation.counts["size_mismatch"] >= expect:
            return
        if now - start > timeout:
            log(f"evaluate: stopping after --timeout {timeout:g} s")
            return
        if last_message[0] and now - last_message[0] > idle:
            return


def evaluate_live(labels_topic: str = "/camera/labels",
                  mask_topic: str = "segmentation/class_mask", *, timeout: float = 120.0,
                  idle: float = 5.0, expect: int = 0, mask_qos_kind: str = "reliable",
                  ready_file: str | Path | None = None, log=print,
                  label_set=None) -> LiveEvaluation:
    """Run the evaluator node until done (see the module docstring); returns its state."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from uda_seg_ros.conversions import ImageConversionError, image_to_numpy
    from uda_seg_ros.transport import use_large_frame_transport

    evaluation = LiveEvaluation(label_set=label_set)
    last_message = [0.0]
    rejected = [0]

    def decode(msg: Image) -> np.ndarray | None:
        try:
            array, encoding = image_to_numpy(msg)
        except ImageConversionError as exc:
            rejected[0] += 1
            log(f"rejected a message: {exc}")
            return None
        if encoding != "mono8":
            rejected[0] += 1
            log(f"rejected a {encoding} message: labels and class masks must be mono8 class ids")
            return None
        return array

    def key(msg: Image) -> tuple[int, int]:
        return (msg.header.stamp.sec, msg.header.stamp.nanosec)

    def on_label(msg: Image) -> None:
        last_message[0] = time.monotonic()
        label = decode(msg)
        if label is not None:
            evaluation.add_label(key(msg), label)

    def on_mask(msg: Image) -> None:
        arrived = time.time()
        last_message[0] = time.monotonic()
        mask = decode(msg)
        if mask is not None:
            latency = arrived - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            evaluation.add_mask(key(msg), mask, latency)

    use_large_frame_transport()  # the same transports as the player and the node
    rclpy.init(args=[])  # our own flags are not ROS arguments
    node = rclpy.create_node("uda_seg_live_eval")
    node.create_subscription(Image, mask_topic, on_mask, mask_qos(mask_qos_kind))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    try:
        if node.resolve_topic_name(mask_topic) != node.resolve_topic_name(labels_topic):
            wait_for_mask_publisher(node, executor, mask_topic, timeout, log)
        # Subscribed to the labels only now: a player that waits for a labels subscriber
        # (`uda-seg-bag play` does) then cannot start before the masks can arrive here.
        # Reliable with a deep queue: no label is lost while a mask is being scored.
        node.create_subscription(Image, labels_topic, on_label, QoSProfile(depth=100))
        if ready_file:
            Path(ready_file).write_text("ready\n")
        spin_until_done(executor, evaluation, start=start, last_message=last_message,
                        timeout=timeout, idle=idle, expect=expect, log=log)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C: report what was matched so far
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    evaluation.counts["rejected"] = rejected[0]
    return evaluation


def add_arguments(parser) -> None:
    parser.add_argument("--labels-topic", default="/camera/labels")
    parser.add_argument("--mask-topic", default="segmentation/class_mask")
    parser.add_argument("--mask-qos", default="reliable", choices=("reliable", "best_effort"),
                        help="must be compatible with the node's class_mask publisher")
    parser.add_argument("--expect", type=int, default=0,
                        help="stop once this many frames were matched (0 = wait for --idle)")
    parser.add_argument("--timeout", type=float, default=120.0, help="stop after this many seconds")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="stop when nothing arrived for this many seconds after the first "
                             "message")
    parser.add_argument("--out", default="", help="write the result as JSON here")
    parser.add_argument("--node-stats", default="",
                        help="the node's stats_file JSON, merged into the result if present")
    parser.add_argument("--label-set", default="camvid12",
                        help="the classes: camvid12 (default) or the label set YAML of the "
                             "model and the bag")
    parser.add_argument("--ready-file", default="",
                        help="touch this file once the subscriptions exist (for scripts)")


def run(args) -> int:
    evaluation = evaluate_live(args.labels_topic, args.mask_topic, timeout=args.timeout,
                               idle=args.idle, expect=args.expect, mask_qos_kind=args.mask_qos,
                               ready_file=args.ready_file or None, label_set=args.label_set)
    result = evaluation.result()
    if args.node_stats:
        merge_node_stats(result, args.node_stats)
    print(format_result(result), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["frames_matched"] else 3
