"""`uda-seg-bag write`: a CamVid split as a rosbag2 file, and the bag format the tools share.

    uda-seg-bag write --camvid data/synthetic/camvid --split test --out runs/camvid_test_bag

`write` turns a CamVid split (colour-label or SegNet layout) into a bag with the frames
in sequence order as sensor_msgs/msg/Image rgb8 on /camera/image_raw (or
sensor_msgs/msg/CompressedImage JPEG on /camera/image_raw/compressed with --compressed)
and the ground truth as mono8 class ids (the 12 classes of labels.py) on /camera/labels.
An image and its label share one header stamp (frame_id 'camera'), which is also the
bag's receive time; that stamp is how the live evaluator pairs a label with the node's
class mask. The bag is written with the pure-Python `rosbags` library in rosbag2 format
version 8, with message definitions from the Humble type store (sensor_msgs/Image,
CompressedImage and std_msgs/Header are identical from Humble to Kilted), so `ros2 bag
play` of Humble and later reads it; mcap (default) or sqlite3 storage. Writing needs no
rclpy.

The topics, message types and BagError defined here are what the player (bag_player.py)
and the live evaluator (live_eval.py) read; the `uda-seg-bag` command line that joins
the three is bag_cli.py.
"""
from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
LABELS_TOPIC = "/camera/labels"
FRAME_ID = "camera"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
# What image_transport's compressed publisher writes for an rgb8 source; decoders that
# only look for 'jpeg' in the string read it too.
COMPRESSED_FORMAT = "rgb8; jpeg compressed bgr8"
# A fixed first stamp (2023-11-14T22:13:20Z) keeps the bytes of a written bag
# reproducible; `play` restamps to the current time by default anyway.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000
BAG_VERSION = 8  # rosbag2 metadata version readable from Humble on (9 is Jazzy's)
STORAGES = ("mcap", "sqlite3")


class BagError(RuntimeError):
    """A bag that cannot be written or read as asked."""


@dataclass
class BagSummary:
    path: str
    storage: str
    frames: int
    fps: float
    start_ns: int
    period_ns: int
    image_topic: str
    labels_topic: str
    height: int
    width: int
    compressed: bool


def typestore():
    """The rosbags type store the bags are written with (ROS 2 Humble definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def frame_period_ns(fps: float) -> int:
    if not fps > 0:
        raise BagError(f"--fps must be positive, got {fps}")
    return round(1e9 / fps)


def _header(store, stamp_ns: int):
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=FRAME_ID)


def image_message(store, array: np.ndarray, encoding: str, stamp_ns: int):
    """A rosbags sensor_msgs/msg/Image for an (H, W, 3) rgb8 or (H, W) mono8 array."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    channels = {"rgb8": 3, "mono8": 1}[encoding]
    if (array.ndim == 3 and array.shape[2] != channels) or (array.ndim == 2 and channels != 1) \
            or array.ndim not in (2, 3):
        raise BagError(f"cannot write an array of shape {array.shape} as {encoding}")
    height, width = array.shape[:2]
    return store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels, data=array.reshape(-1),
    )


def compressed_message(store, rgb: np.ndarray, stamp_ns: int, quality: int = 95):
    """A rosbags sensor_msgs/msg/CompressedImage holding `rgb` as JPEG."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                            [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise BagError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return store.types[COMPRESSED_TYPE](
        header=_header(store, stamp_ns), format=COMPRESSED_FORMAT,
        data=np.frombuffer(jpeg.tobytes(), dtype=np.uint8),
    )


def write_frames_bag(
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    out: str | Path,
    *,
    fps: float = 30.0,
    storage: str = "mcap",
    compressed: bool = False,
    start_ns: int = DEFAULT_START_NS,
    jpeg_quality: int = 95,
    overwrite: bool = False,
) -> BagSummary:
    """Write (rgb image, label ids) pairs, in order, as a rosbag2 directory `out`.

    Frame i gets stamp start_ns + i / fps on both topics; the label is written first so
    a player that keeps the bag's order delivers it before the image it belongs to.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagError(f"unknown storage '{storage}'; choose from {', '.join(STORAGES)}")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise BagError(f"{out} already exists; remove it or pass --overwrite")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    period = frame_period_ns(fps)
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    image_topic = COMPRESSED_TOPIC if compressed else IMAGE_TOPIC
    count, shape = 0, (0, 0)
    with Writer(out, version=BAG_VERSION, storage_plugin=plugin) as writer:
        labels_conn = writer.add_connection(LABELS_TOPIC, IMAGE_TYPE, typestore=store)
        image_conn = writer.add_connection(
            image_topic, COMPRESSED_TYPE if compressed else IMAGE_TYPE, typestore=store)
        for index, (image, label) in enumerate(frames):
            if image.shape[:2] != label.shape[:2]:
                raise BagError(f"frame {index}: image {image.shape[:2]} and label "
                               f"{label.shape[:2]} differ in size")
            stamp = start_ns + index * period
            writer.write(labels_conn, stamp, store.serialize_cdr(
                image_message(store, label, "mono8", stamp), IMAGE_TYPE))
            if compressed:
                msg = compressed_message(store, image, stamp, jpeg_quality)
                writer.write(image_conn, stamp, store.serialize_cdr(msg, COMPRESSED_TYPE))
            else:
                msg = image_message(store, image, "rgb8", stamp)
                writer.write(image_conn, stamp, store.serialize_cdr(msg, IMAGE_TYPE))
            count, shape = count + 1, image.shape[:2]
    if count == 0:
        shutil.rmtree(out, ignore_errors=True)
        raise BagError("no frames to write (empty split?)")
    return BagSummary(str(out), storage, count, fps, start_ns, period, image_topic, LABELS_TOPIC,
                      int(shape[0]), int(shape[1]), compressed)


def camvid_frames(root: str | Path, split: str = "test", fmt: str = "auto",
                  limit: int = 0, label_set=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rgb, label ids) of a CamVid (or plain folder) split in sequence order, read by the
    core loader; the ids are `label_set`'s (camvid12 by default)."""
    from uda_seg_core.data import build_dataset

    dataset = build_dataset(fmt, root, split, label_set=label_set)
    total = len(dataset) if not limit else min(limit, len(dataset))
    for index in range(total):
        item = dataset[index]
        yield np.asarray(item["image"], dtype=np.uint8), np.asarray(item["label"], dtype=np.uint8)


def write_camvid_bag(root: str | Path, out: str | Path, *, split: str = "test",
                     fmt: str = "auto", limit: int = 0, label_set=None, **kwargs) -> BagSummary:
    """`uda-seg-bag write`: a CamVid split (either layout, or a plain folder's) as a
    rosbag2 directory, its labels in `label_set`'s ids."""
    return write_frames_bag(camvid_frames(root, split, fmt, limit, label_set), out, **kwargs)


def read_bag_frames(bag: str | Path) -> list[dict]:
    """All frames of a bag written by `write_frames_bag`, decoded with rosbags (for tests
    and tools): [{'stamp_ns', 'image' (H, W, 3 RGB), 'label' (H, W), 'encoding', ...}]."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    frames: dict[int, dict] = {}
    with Reader(bag) as reader:
        for conn, timestamp, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            frame = frames.setdefault(stamp, {"stamp_ns": stamp})
            frame.setdefault("bag_time_ns", timestamp)
            if conn.topic == LABELS_TOPIC:
                frame["label"] = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[
                    :, : msg.width]
                frame["label_encoding"] = msg.encoding
            elif conn.msgtype == COMPRESSED_TYPE:
                import cv2

                bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
                frame["image"] = bgr[..., ::-1]
                frame["encoding"] = msg.format
            else:
                rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
                frame["image"] = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
                frame["encoding"] = msg.encoding
            frame["frame_id"] = msg.header.frame_id
    return [frames[k] for k in sorted(frames)]


# ---------------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `uda-seg-bag write`."""
    p.add_argument("--camvid", required=True, help="CamVid root (train/ test/ ... folders)")
    p.add_argument("--format", default="auto",
                   choices=("auto", "camvid", "camvid_segnet", "folder"),
                   help="auto (default): read off the folder; camvid: 960x720 colour labels "
                   "(<name>_L.png); camvid_segnet: SegNet 360x480 index labels; folder: "
                   "images/ + labels/ index PNGs")
    p.add_argument("--label-set", default="camvid12",
                   help="the classes the labels are written in: camvid12 (default) or the "
                        "label set YAML the model was trained with")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the stamps")
    p.add_argument("--storage", default="mcap", choices=STORAGES)
    p.add_argument("--compressed", action="store_true",
                   help=f"JPEG CompressedImage on {COMPRESSED_TOPIC} instead of raw rgb8")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--limit", type=int, default=0, help="only the first N frames (0 = all)")
    p.add_argument("--start-sec", type=float, default=DEFAULT_START_NS / 1e9,
                   help="stamp of the first frame, seconds since the epoch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag")


def run(args: argparse.Namespace) -> int:
    """`uda-seg-bag write`."""
    summary = write_camvid_bag(
        args.camvid, args.out, split=args.split, fmt=args.format, limit=args.limit,
        label_set=args.label_set,
        fps=args.fps, storage=args.storage, compressed=args.compressed,
        start_ns=round(args.start_sec * 1e9), jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite)
    print(f"wrote {summary.frames} frames ({summary.height}x{summary.width}, {summary.fps:g} fps, "
          f"{summary.storage}) to {summary.path}: {summary.image_topic} + {summary.labels_topic}")
    return 0
