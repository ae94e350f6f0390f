"""`uda-seg-bag write`: the bag reads back, frame for frame, with rosbags and with mcap."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from helpers.fixtures import blocks, camvid_names, write_tiny_camvid
from uda_seg_core.data import build_dataset
from uda_seg_tools.bag import (
    COMPRESSED_TOPIC,
    DEFAULT_START_NS,
    IMAGE_TOPIC,
    LABELS_TOPIC,
    frame_period_ns,
    read_bag_frames,
    write_camvid_bag,
)
from uda_seg_tools.bag_cli import main

FPS = 15.0


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    root = write_tiny_camvid(tmp_path_factory.mktemp("camvid"), {"test": camvid_names(5)},
                             size=(48, 64), frames=blocks)
    ds = build_dataset("camvid", root, "test")
    return root, [ds[i] for i in range(len(ds))]


def _expected_stamps(n: int) -> list[int]:
    return [DEFAULT_START_NS + i * frame_period_ns(FPS) for i in range(n)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_reads_back_with_rosbags(camvid, tmp_path, storage):
    from rosbags.rosbag2 import Reader

    root, items = camvid
    bag = tmp_path / "bag"
    summary = write_camvid_bag(root, bag, fps=FPS, storage=storage)
    assert summary.frames == len(items) == 5
    with Reader(bag) as reader:
        assert reader.message_count == 2 * len(items)
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {IMAGE_TOPIC: "sensor_msgs/msg/Image",
                         LABELS_TOPIC: "sensor_msgs/msg/Image"}
        times = sorted({t for _, t, _ in reader.messages()})
    assert times == _expected_stamps(len(items))
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == storage and info["version"] == 8

    frames = read_bag_frames(bag)
    assert [f["stamp_ns"] for f in frames] == _expected_stamps(len(items))
    for frame, item in zip(frames, items):
        assert frame["bag_time_ns"] == frame["stamp_ns"]
        assert frame["encoding"] == "rgb8" and frame["label_encoding"] == "mono8"
        assert frame["frame_id"] == "camera"
        np.testing.assert_array_equal(frame["image"], item["image"])
        np.testing.assert_array_equal(frame["label"], item["label"])


def test_mcap_bag_reads_with_the_mcap_library(camvid, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    root, items = camvid
    bag = tmp_path / "bag"
    write_camvid_bag(root, bag, fps=FPS, storage="mcap")
    (path,) = bag.glob("*.mcap")
    seen: dict[str, list] = {IMAGE_TOPIC: [], LABELS_TOPIC: []}
    with path.open("rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        for schema, channel, message, msg in reader.iter_decoded_messages():
            assert schema.name == "sensor_msgs/msg/Image" and schema.encoding == "ros2msg"
            assert channel.message_encoding == "cdr"
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            assert message.log_time == stamp
            seen[channel.topic].append((stamp, msg))
    for topic, encoding, key in ((IMAGE_TOPIC, "rgb8", "image"), (LABELS_TOPIC, "mono8", "label")):
        assert [s for s, _ in seen[topic]] == _expected_stamps(len(items))
        for (_, msg), item in zip(seen[topic], items):
            assert msg.encoding == encoding and msg.header.frame_id == "camera"
            shape = item[key].shape
            assert (msg.height, msg.width, msg.step) == (shape[0], shape[1],
                                                         int(np.prod(shape[1:])))
            np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(shape),
                                          item[key])


def test_compressed_bag_holds_jpeg_and_exact_labels(camvid, tmp_path):
    root, items = camvid
    bag = tmp_path / "bag"
    assert main(["write", "--camvid", str(root), "--out", str(bag), "--compressed",
                 "--storage", "sqlite3", "--jpeg-quality", "98"]) == 0
    frames = read_bag_frames(bag)
    assert len(frames) == len(items)
    for frame, item in zip(frames, items):
        assert "jpeg" in frame["encoding"]
        np.testing.assert_array_equal(frame["label"], item["label"])
        # Lossy, but the same picture in the same channel order (RGB, not BGR).
        diff = np.abs(frame["image"].astype(int) - item["image"].astype(int)).mean()
        swapped = np.abs(frame["image"][..., ::-1].astype(int) - item["image"].astype(int)).mean()
        assert diff < 10 and diff < swapped / 3, (diff, swapped)
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections}[COMPRESSED_TOPIC] == \
            "sensor_msgs/msg/CompressedImage"


def test_write_refuses_to_overwrite_and_names_the_fix(camvid, tmp_path, capsys):
    root, _ = camvid
    bag = tmp_path / "bag"
    args = ["write", "--camvid", str(root), "--out", str(bag), "--limit", "2"]
    assert main(args) == 0
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--fps", "10"]) == 0
    frames = read_bag_frames(bag)
    assert [f["stamp_ns"] - DEFAULT_START_NS for f in frames] == [0, 100_000_000]
