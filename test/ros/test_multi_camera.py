"""Several cameras on one model: one node process serving /front and /rear (issue 14).

`image_topics: [/front/image_raw, /rear/image_raw]`: each camera's masks on
`<its namespace>/segmentation/class_mask` with its header, frames waiting together in one
batch, statistics per camera and in total on /diagnostics.

    .venv/bin/pytest test/ros/test_multi_camera.py -q
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from helpers.ros import NodeProcess, RosClient, wait_for
from uda_seg_core.inference import Segmenter
from uda_seg_ros.conversions import image_to_numpy, numpy_to_image
from uda_seg_ros.diagnostics import status_values

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
H, W = 48, 64
CAMERAS = {"/front": (40, 60), "/rear": (30, 50)}  # each camera its own frame size


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("multi")
    topics = ",".join(f"{ns}/image_raw" for ns in CAMERAS)
    proc = NodeProcess.start(NodeProcess.python_module(
        "uda_seg_ros.segmentation_node", "--ros-args", "-r", "__ns:=/multi",
        "-p", f"model_path:={tiny_checkpoint}", "-p", f"input_width:={W}",
        "-p", f"input_height:={H}", "-p", "warmup_iters:=1", "-p", "stats_period:=0.2",
        "-p", "device:=cpu", "-p", f"image_topics:=[{topics}]"), tmp / "multi.log")
    client = RosClient()
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", RELIABLE)
    try:
        proc.wait_for_output("ready:", timeout=180)
        pubs = {ns: client.publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
                for ns in CAMERAS}
        masks = {ns: client.collect(Image, f"{ns}/segmentation/class_mask", RELIABLE)
                 for ns in CAMERAS}
        for pub in pubs.values():
            client.wait_for_subscriber(pub)
        yield client, proc, pubs, masks
    finally:
        proc.stop(signal.SIGINT)
        client.close()


def camera_frame(ns: str, frame_id: str, seed: int) -> tuple[np.ndarray, Image]:
    rgb = np.random.default_rng(seed).integers(0, 256, (*CAMERAS[ns], 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + seed, 12345
    return rgb, msg


def test_two_cameras_get_their_own_masks_with_their_headers(node, tiny_checkpoint):
    """Mutants: outputs of both cameras on one topic (or in the node's namespace instead
    of beside each input), masks of a batch given to the wrong camera (the sizes differ,
    so a swap shows), a header not copied, a batched mask unlike the single-frame one."""
    client, proc, pubs, masks = node
    # the node's default resize_mode (letterbox): these frames are not 4:3
    seg = Segmenter.from_checkpoint(tiny_checkpoint, device="cpu", input_size=(H, W),
                                    resize_mode="letterbox")
    sent = {ns: camera_frame(ns, f"{ns[1:]}_cam", seed) for seed, ns in enumerate(CAMERAS)}
    got = {}
    for _ in range(40):  # both at once, again until each camera's mask came back
        for ns, (_, msg) in sent.items():
            pubs[ns].publish(msg)
        try:
            for ns, (_, msg) in sent.items():
                got[ns] = masks[ns].wait_for(lambda m, f=msg.header.frame_id:
                                             m.header.frame_id == f, timeout=1.0)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail(f"no masks from both cameras:\n{proc.output()[-2000:]}")
    for ns, (rgb, msg) in sent.items():
        out = got[ns]
        assert out.header == msg.header, ns
        mask, encoding = image_to_numpy(out)
        assert encoding == "mono8" and mask.shape == CAMERAS[ns], ns
        assert (mask != seg.segment(rgb)).mean() < 0.01, ns
        # (the module's other test may have left this camera's own flood masks here)
        theirs = {f"{o[1:]}_cam" for o in CAMERAS if o != ns} | {f"flood_{o[1:]}"
                                                                 for o in CAMERAS if o != ns}
        others = [m for m in masks[ns].snapshot() if m.header.frame_id in theirs]
        assert not others, f"{ns} received another camera's masks"


def test_frames_waiting_together_are_batched_and_counted_per_camera(node):
    """Mutants: one network run per frame however many wait (total inference count ==
    frames processed), statistics only in total (no per-camera status), a camera's
    frames counted on the other."""
    client, proc, pubs, masks = node
    frames = {ns: camera_frame(ns, f"flood_{ns[1:]}", seed)[1] for seed, ns in enumerate(CAMERAS)}
    start = time.monotonic()
    while time.monotonic() - start < 2.0:  # both cameras far faster than the network
        for ns, msg in frames.items():
            pubs[ns].publish(msg)
        time.sleep(0.002)

    def settled():
        for array in reversed(client.diagnostics.snapshot()):
            names = [s.name for s in array.status]
            if not names or not names[0].startswith("/multi/uda_segmentation"):
                continue
            values = {s.name: status_values(s) for s in array.status}
            total = values["/multi/uda_segmentation: segmentation"]
            cams = {ns: values.get(f"/multi/uda_segmentation: segmentation {ns}/image_raw")
                    for ns in CAMERAS}
            if all(cams.values()) and int(total["frames_processed"]) >= 10:
                return total, cams
        return None

    time.sleep(0.5)  # the frames still in the slots finish
    client.diagnostics.clear()
    total, cams = wait_for(settled, 30, message="per-camera /diagnostics after the flood")
    processed = {ns: int(v["frames_processed"]) for ns, v in cams.items()}
    assert all(n >= 3 for n in processed.values()), processed
    assert sum(processed.values()) == int(total["frames_processed"])
    for ns, values in cams.items():
        assert int(values["frames_received"]) >= processed[ns]
        assert int(values["inference_count"]) == min(processed[ns], 300)  # a run per frame...
    batches = int(total["inference_count"])
    assert batches < int(total["frames_processed"]), (batches, processed)  # ...shared runs
