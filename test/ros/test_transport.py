"""The DDS transport for camera-sized frames: Fast DDS's 512 KiB shared-memory segment
holds one 480x360 rgb8 frame (518 kB), so a publisher that sends the frame's label next
reuses the frame's buffer before a subscriber copied it, and the frame is lost in silence.
The uda_seg processes use a profile with a 16 MiB segment (uda_seg_ros/transport.py)."""
from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from helpers.fixtures import blocks, camvid_names, write_tiny_camvid
from helpers.ros import RosClient, ros_env, wait_for
from uda_seg_ros.transport import (
    OPT_OUT,
    PROFILE,
    PROFILE_VARIABLE,
    USER_CHOICES,
    use_large_frame_transport,
)

FRAME_BYTES = 480 * 360 * 3  # one CamVid frame, rgb8
LABEL_BYTES = 480 * 360  # its mono8 label


def test_profile_is_set_where_nothing_else_is_chosen():
    env: dict[str, str] = {}
    assert use_large_frame_transport(env) == str(PROFILE)
    assert env == {PROFILE_VARIABLE: str(PROFILE)}
    explicit = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    assert use_large_frame_transport(explicit) == str(PROFILE)


@pytest.mark.parametrize("choice", [
    *({name: "/etc/my_profile.xml"} for name in USER_CHOICES[:2]),
    {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
    {OPT_OUT: "0"},
])
def test_a_users_own_transport_choice_is_left_alone(choice):
    """Bug guarded: overwriting a vehicle's own Fast DDS profile, or giving Cyclone DDS a
    Fast DDS variable as if it were its configuration."""
    env = dict(choice)
    assert use_large_frame_transport(env) is None
    assert env == choice


def test_profile_keeps_both_transports_with_room_for_several_frames():
    """The installed XML parses, is the default participant profile, keeps shared memory and
    UDPv4 (a node on another host must still be reachable), and its segment holds a frame
    and its label several times over."""
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(PROFILE).getroot()
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iterfind(".//d:transport_descriptor", ns)}
    kinds = {d.findtext("d:type", namespaces=ns) for d in descriptors.values()}
    assert kinds == {"SHM", "UDPv4"}
    shm = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) >= 4 * (FRAME_BYTES + LABEL_BYTES)
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert sorted(used) == sorted(descriptors)
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"


@pytest.fixture(scope="module")
def full_size_bag(tmp_path_factory):
    from uda_seg_tools.bag import write_camvid_bag

    root = tmp_path_factory.mktemp("full_size")
    write_tiny_camvid(root / "camvid", {"test": camvid_names(30)}, size=(360, 480),
                      frames=blocks)
    write_camvid_bag(root / "camvid", root / "bag", fps=30.0)
    return root / "bag"


def test_player_loses_no_full_size_frame_beside_its_label(full_size_bag):
    """`uda-seg-bag play` at 30 fps of 480x360 frames to one process subscribed to images
    (camera QoS) and labels: every frame whose label arrived arrives too. With Fast DDS's
    default segment about 40% of the images were lost here (the label reused the image's
    buffer); the subscriber keeps the default transport, so the player's profile is what
    this checks."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from uda_seg_tools.bag import IMAGE_TOPIC, LABELS_TOPIC

    client = RosClient("uda_seg_transport_test")
    try:
        images = client.collect(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        labels = client.collect(Image, LABELS_TOPIC, 10)
        env = ros_env()
        for name in (*USER_CHOICES, OPT_OUT):
            env.pop(name, None)
        play = subprocess.run([sys.executable, "-m", "uda_seg_tools.bag_cli", "play",
                               str(full_size_bag), "--wait-subscribers", "30"], check=False,
                              env=env, capture_output=True, text=True, timeout=90)
        assert play.returncode == 0, play.stderr
        assert "played 30 images" in play.stdout
        wait_for(lambda: len(labels.snapshot()) >= 30, timeout=5,
                 message="the 30 labels (reliable)")
        time.sleep(0.5)  # the last image, best effort, may trail its label
    finally:
        client.close()

    def stamps(collector):
        return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in collector.snapshot()]

    got = set(stamps(images))
    missing = [i for i, stamp in enumerate(stamps(labels)) if stamp not in got]
    assert not missing, f"images lost beside their labels: frames {missing} of 30"
