"""`uda-seg-bag play BAG`: publish a rosbag2 file through rclpy, for machines without `ros2 bag`.

    uda-seg-bag play runs/demo/camvid_test_bag --remap /camera/image_raw:=image
    uda-seg-bag play BAG --rate 0.5 --loop
    uda-seg-bag play BAG --pace-on segmentation/class_mask     # one frame at a time

Messages go out with the bag's recorded timing (divided by --rate). By default every
header stamp is replaced by the current time when its message is published, so the
node's end-to-end latency (now - header.stamp) is meaningful; all messages that shared
a recorded stamp get the same new stamp, which keeps an image and its label paired for
the live evaluator. --no-restamp publishes the recorded stamps unchanged.

Before the first message the player waits (up to --wait-subscribers seconds) until
every topic it publishes has a subscriber: a freshly started node or evaluator would
otherwise miss the first frames. With --pace-on TOPIC it also waits, after each image,
for a message on TOPIC carrying that image's stamp (the node's class mask) before the
next one: playback then runs exactly as fast as the node and no frame is dropped, which
is what a drop-free live evaluation needs on a machine of unknown speed.
"""
from __future__ import annotations

import importlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from uda_seg_ros.transport import use_large_frame_transport
from uda_seg_tools.bag import COMPRESSED_TYPE, IMAGE_TYPE, LABELS_TOPIC, BagError

SETTLE_S = 0.5  # after subscribers appear, discovery of their own publishers may lag


@dataclass
class PlaybackStats:
    published: int = 0
    images: int = 0
    loops: int = 0
    wall_s: float = 0.0
    max_lag_ms: float = 0.0  # how far behind the recorded schedule a publish went out
    pace_timeouts: int = 0  # --pace-on: images whose answer never came
    topics: dict[str, int] = field(default_factory=dict)


def parse_remaps(remaps: list[str]) -> dict[str, str]:
    """['/a:=/b', ...] -> {'/a': '/b'}; the syntax of `ros2 bag play --remap`."""
    table = {}
    for text in remaps or []:
        if ":=" not in text:
            raise BagError(f"remap '{text}' must look like FROM:=TO "
                           f"(e.g. /camera/image_raw:=image)")
        src, dst = text.split(":=", 1)
        table[src.strip()] = dst.strip()
    return table


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class sensor_msgs.msg.Image."""
    package, _, name = msgtype.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not available to rclpy ({exc}); install "
                       f"its ROS 2 package (e.g. "
                       f"ros-<distro>-{package.split('/')[0].replace('_', '-')})"
                       ) from exc


class Restamper:
    """Maps each recorded stamp to the time its first message is published."""

    def __init__(self, clock, keep: int = 256):
        self.clock = clock
        self.keep = keep
        self.table: OrderedDict[tuple[int, int], object] = OrderedDict()

    def __call__(self, stamp):
        key = (stamp.sec, stamp.nanosec)
        new = self.table.get(key)
        if new is None:
            new = self.clock.now().to_msg()
            self.table[key] = new
            while len(self.table) > self.keep:
                self.table.popitem(last=False)
        return new


class PaceWaiter:
    """Collects the stamps seen on the pacing topic and lets the player wait for one."""

    def __init__(self):
        self.cond = threading.Condition()
        self.seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def on_message(self, msg) -> None:
        with self.cond:
            self.seen[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = None
            while len(self.seen) > 256:
                self.seen.popitem(last=False)
            self.cond.notify_all()

    def wait(self, key: tuple[int, int], timeout: float, ok=lambda: True) -> bool:
        """True once `key` was seen; False after `timeout` s or when `ok()` turns false."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0 or not ok():
                    return False
                self.cond.wait(min(left, 0.1))
            return True


def wait_for_subscribers(publishers: dict, timeout: float, log) -> bool:
    """Block until every publisher has at least one matched subscription (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = [t for t, p in publishers.items() if p.get_subscription_count() == 0]
        if not missing:
            time.sleep(SETTLE_S)
            return True
        time.sleep(0.05)
    log(f"no subscriber after {timeout:g} s on: {', '.join(missing)}; playing anyway")
    return False


def _spin(executor) -> None:
    try:
        executor.spin()
    except Exception as exc:
        if type(exc).__name__ != "ExternalShutdownException":
            raise


def play_bag(bag: str | Path, *, rate: float = 1.0, loop: bool = False, restamp: bool = True,
             remap: dict[str, str] | None = None, topics: list[str] | None = None,
             wait_subscribers: float = 10.0, pace_on: str = "", pace_timeout: float = 10.0,
             qos_depth: int = 32, log=print) -> PlaybackStats:
    """Publish `bag` with rclpy (rclpy.init must not have been called by the caller)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    if not rate > 0:
        raise BagError(f"--rate must be positive, got {rate}")
    bag = Path(bag)
    if not (bag / "metadata.yaml").is_file():
        raise BagError(f"{bag} is not a rosbag2 directory (no metadata.yaml); write one with "
                       f"`uda-seg-bag write`")
    remap = remap or {}
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if not topics or c.topic in topics]
    if not connections:
        raise BagError(f"{bag}: none of the topics {topics} is in the bag")
    # The camera stream: every image topic but the ground truth (what --pace-on waits after).
    image_topics = {c.topic for c in connections
                    if c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE) and c.topic != LABELS_TOPIC}

    use_large_frame_transport()  # a 518 kB frame and its label must both fit in the segment
    rclpy.init(args=[])  # our own flags are not ROS arguments
    node = rclpy.create_node("uda_seg_bag_player")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    stats = PlaybackStats()
    try:
        publishers, classes = {}, {}
        for conn in connections:
            if conn.topic in publishers:
                continue
            classes[conn.topic] = message_class(conn.msgtype)
            publishers[conn.topic] = node.create_publisher(
                classes[conn.topic], remap.get(conn.topic, conn.topic),
                QoSProfile(depth=qos_depth))
        waiter = None
        if pace_on:
            waiter = PaceWaiter()
            from sensor_msgs.msg import Image

            # Best effort matches a reliable and a best-effort publisher alike.
            node.create_subscription(Image, pace_on, waiter.on_message, qos_profile_sensor_data)
        spinner.start()
        if wait_subscribers > 0:
            wait_for_subscribers({remap.get(t, t): p for t, p in publishers.items()},
                                 wait_subscribers, log)
        start = time.monotonic()
        try:
            # rclpy's SIGINT handler shuts the context down; playback then stops cleanly.
            while rclpy.ok():
                # A fresh stamp table per pass: a loop must not repeat the last pass's stamps.
                restamper = Restamper(node.get_clock()) if restamp else None
                finished = _play_once(bag, connections, publishers, classes, deserialize_message,
                                      rate, restamper, image_topics, waiter, pace_timeout, stats,
                                      rclpy.ok)
                stats.loops += finished
                if not loop or not finished:
                    break
        except KeyboardInterrupt:
            pass
        stats.wall_s = time.monotonic() - start
        if rclpy.ok():
            time.sleep(SETTLE_S)  # let reliable writers hand over the last samples
    finally:
        executor.shutdown(timeout_sec=1.0)
        if spinner.is_alive():
            # The spin thread must be gone before its node: a thread left inside rcl at
            # interpreter exit aborts the process.
            spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return stats


def _sleep_until(due: float, ok) -> bool:
    """Sleep until time.monotonic() >= due, in short steps; False if `ok()` turned false."""
    while ok():
        left = due - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))
    return False


def _play_once(bag, connections, publishers, classes, deserialize_message, rate, restamper,
               image_topics, waiter, pace_timeout, stats: PlaybackStats, ok) -> bool:
    """One pass over the bag; False when stopped early (Ctrl-C)."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        wall0 = time.monotonic()
        first = None
        for conn, timestamp, raw in reader.messages(connections=connections):
            first = timestamp if first is None else first
            due = wall0 + (timestamp - first) / 1e9 / rate
            lag = time.monotonic() - due
            if lag > 0:
                stats.max_lag_ms = max(stats.max_lag_ms, lag * 1e3)
            elif not _sleep_until(due, ok):
                return False
            msg = deserialize_message(bytes(raw), classes[conn.topic])
            if restamper is not None and hasattr(msg, "header"):
                msg.header.stamp = restamper(msg.header.stamp)
            if not ok():
                return False
            publishers[conn.topic].publish(msg)
            stats.published += 1
            stats.topics[conn.topic] = stats.topics.get(conn.topic, 0) + 1
            if conn.topic in image_topics:
                stats.images += 1
                if waiter is not None:
                    key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                    if not waiter.wait(key, pace_timeout, ok):
                        if not ok():
                            return False
                        stats.pace_timeouts += 1
                    # Pacing replaces the recorded schedule: restart it from here.
                    wall0, first = time.monotonic(), None
    return True


def add_arguments(parser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (mcap or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--loop", action="store_true", help="play again and again until Ctrl-C")
    parser.add_argument("--no-restamp", dest="restamp", action="store_false",
                        help="keep the recorded header stamps")
    parser.add_argument("--remap", "--topic-remap", action="append", default=[], metavar="FROM:=TO",
                        help="publish topic FROM as TO (repeatable)")
    parser.add_argument("--topics", nargs="+", default=None, help="only these recorded topics")
    parser.add_argument("--wait-subscribers", type=float, default=10.0,
                        help="seconds to wait for a subscriber on every topic (0 = do not wait)")
    parser.add_argument("--pace-on", default="", metavar="TOPIC",
                        help="after each image wait for a message with its stamp on TOPIC "
                        "(e.g. segmentation/class_mask): drop-free, as fast as the node")
    parser.add_argument("--pace-timeout", type=float, default=10.0,
                        help="seconds to wait for each --pace-on answer before moving on")


def run(args) -> int:
    try:
        stats = play_bag(args.bag, rate=args.rate, loop=args.loop, restamp=args.restamp,
                         remap=parse_remaps(args.remap), topics=args.topics,
                         wait_subscribers=args.wait_subscribers, pace_on=args.pace_on,
                         pace_timeout=args.pace_timeout)
    except KeyboardInterrupt:  # before playback started (waiting for subscribers)
        return 0
    fps = stats.images / stats.wall_s if stats.wall_s > 0 else 0.0
    print(f"played {stats.images} images ({stats.published} messages, {stats.loops} loop(s)) in "
          f"{stats.wall_s:.2f} s = {fps:.1f} fps; max lag {stats.max_lag_ms:.1f} ms"
          + (f"; {stats.pace_timeouts} pace timeouts" if args.pace_on else ""), flush=True)
    return 0
