"""Serving an exported .onnx where torch cannot be imported (issue 27): the node, the
Segmenter and the ONNX Runtime backend, each run in a child process whose first act is to
make `import torch` (and the rest of the training stack) fail (helpers/without_torch.py).

The node test is also the round trip of the interface perception stacks read: a 16:9
frame through letterbox at the network size (pad 255), its camera_info scaled and
shifted, the confidence image while subscribed, the class names latched on label_info and
on /diagnostics, and a QoS override through rclpy's qos_overrides parameters.

    .venv/bin/pytest test/ros/test_serving_without_torch.py -q
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from helpers import ROOT
from helpers.ros import NodeProcess, RosClient, ros_env, wait_for
from uda_seg_core.inference import Segmenter
from uda_seg_core.labels import CLASS_NAMES
from uda_seg_core.optimize.export import export_checkpoint
from uda_seg_ros.conversions import image_to_numpy, numpy_to_image
from uda_seg_ros.diagnostics import status_values

WITHOUT_TORCH = str(ROOT / "test" / "helpers" / "without_torch.py")
H, W = 48, 64  # the export's size: 4:3
FRAME = (180, 320)  # 16:9
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, tiny_checkpoint):
    path = tmp_path_factory.mktemp("notorch") / "model.onnx"
    export_checkpoint(tiny_checkpoint, path, size=(H, W), check_frames=0)
    return path


def run_without_torch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, WITHOUT_TORCH, *args], capture_output=True,
                          text=True, timeout=timeout, env=ros_env(), check=False)


CHECK = """
import json, pkgutil, sys, importlib
import numpy as np
import uda_seg_ros
for info in pkgutil.iter_modules(uda_seg_ros.__path__):
    importlib.import_module("uda_seg_ros." + info.name)
from uda_seg_core.inference import Segmenter, SegmenterError
seg = Segmenter.from_checkpoint(sys.argv[1], device="auto", resize_mode="letterbox")
frame = np.random.default_rng(0).integers(0, 256, (180, 320, 3), dtype=np.uint8)
((mask, conf),) = seg.segment_batch_with_confidence([frame])
try:
    Segmenter.from_checkpoint(sys.argv[2], device="cpu")
    pt_error = ""
except SegmenterError as exc:
    pt_error = str(exc)
print(json.dumps({"shape": list(mask.shape), "device": seg.device, "classes": int(mask.max()),
                  "confidence": float(conf.min()), "pt_error": pt_error,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in
                                   ("torch", "torchvision", "timm", "onnx", "matplotlib"))}))
"""


def test_the_serving_path_imports_and_segments_without_torch(onnx_model, tiny_checkpoint):
    """Every module of uda_seg_ros imports, a Segmenter on the .onnx segments a 16:9 frame
    with its confidence, and a .pt is refused with one error naming both fixes. Mutant:
    segmenter.py importing torch at the top again (this process cannot)."""
    result = run_without_torch("-c", CHECK, str(onnx_model), str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == list(FRAME) and out["device"] == "cpu" and out["loaded"] == []
    assert out["confidence"] > 0 and out["classes"] < 12
    assert "torch" in out["pt_error"] and "uda_seg_ros[train]" in out["pt_error"]
    assert "uda-seg export" in out["pt_error"] and str(tiny_checkpoint) in out["pt_error"]


def test_uda_seg_commands_say_to_install_the_training_extra():
    result = run_without_torch("uda_seg_core.cli", "train", "--help")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "uda_seg_ros[train]" in result.stderr and "Traceback" not in result.stderr


def test_a_node_given_a_checkpoint_without_torch_says_how_to_serve_it(tiny_checkpoint,
                                                                    tmp_path):
    proc = NodeProcess.start(
        [sys.executable, WITHOUT_TORCH, "uda_seg_ros.segmentation_node", "--ros-args",
         "-r", "__ns:=/notorch_pt", "-p", f"model_path:={tiny_checkpoint}"], tmp_path / "pt.log")
    assert proc.wait(120) == 1
    log = proc.output()
    assert "cannot start" in log and "uda_seg_ros[train]" in log and "uda-seg export" in log
    assert "Traceback" not in log


@pytest.fixture(scope="module")
def node(tmp_path_factory, onnx_model):
    tmp = tmp_path_factory.mktemp("notorch_node")
    proc = NodeProcess.start(
        [sys.executable, WITHOUT_TORCH, "uda_seg_ros.segmentation_node", "--ros-args",
         "-r", "__ns:=/notorch", "-p", f"model_path:={onnx_model}", "-p", "device:=cpu",
         "-p", "warmup_iters:=1", "-p", "stats_period:=0.2", "-p", "output_size:=network",
         "-p", "resize_mode:=letterbox",
         "-p", "qos_overrides./notorch/image.subscription.reliability:=reliable"],
        tmp / "node.log")
    client = RosClient()
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", RELIABLE)
    try:
        proc.wait_for_output("ready:", timeout=120)
        yield client, proc
    finally:
        proc.send(signal.SIGINT)
        if proc.proc.returncode is None:
            proc.wait()
        client.close()


def frame_and_info(client, frame_id: str) -> tuple[np.ndarray, Image, CameraInfo]:
    rgb = np.random.default_rng(7).integers(0, 256, (*FRAME, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    msg.header.frame_id = frame_id
    msg.header.stamp = client.node.get_clock().now().to_msg()
    info = CameraInfo(width=FRAME[1], height=FRAME[0], distortion_model="plumb_bob",
                      d=[0.1, -0.05, 0.0, 0.0, 0.0])
    info.header = msg.header
    info.k = [200.0, 0.0, 159.5, 0.0, 200.0, 89.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [200.0, 0.0, 159.5, -20.0, 0.0, 200.0, 89.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return rgb, msg, info


def test_the_node_serves_the_onnx_without_torch(node, onnx_model):
    """A 16:9 frame (reliable QoS: the override took) comes back as a letterboxed mask at
    the network size, pad rows 255, equal to the in-process Segmenter's; with its
    camera_info scaled 1/5 and shifted by the pad, and its confidence image."""
    client, proc = node
    pub = client.publisher(Image, "/notorch/image", RELIABLE)
    info_pub = client.publisher(CameraInfo, "/notorch/camera_info", RELIABLE)
    masks = client.collect(Image, "/notorch/segmentation/class_mask", RELIABLE)
    infos = client.collect(CameraInfo, "/notorch/segmentation/camera_info", RELIABLE)
    confidences = client.collect(Image, "/notorch/segmentation/confidence", RELIABLE)
    client.wait_for_subscriber(pub)
    client.wait_for_subscriber(info_pub)
    rgb, msg, info = frame_and_info(client, "wide_cam")
    got = None
    for _ in range(40):  # discovery may still be settling: send until all three come back
        info_pub.publish(info)
        time.sleep(0.05)
        pub.publish(msg)
        try:
            got = [c.wait_for(lambda m: m.header.frame_id == "wide_cam", timeout=1.0)
                   for c in (masks, infos, confidences)]
            break
        except TimeoutError:
            continue
    assert got, f"no mask, camera_info and confidence:\n{proc.output()[-3000:]}"
    mask_msg, info_msg, conf_msg = got
    mask, enc = image_to_numpy(mask_msg)
    assert enc == "mono8" and mask.shape == (H, W) and mask_msg.header == msg.header
    assert (mask[:6] == 255).all() and (mask[42:] == 255).all() and (mask[6:42] < 12).all()
    seg = Segmenter.from_checkpoint(onnx_model, device="cpu", output_size="network",
                                    resize_mode="letterbox")
    assert (mask != seg.segment(rgb)).mean() < 0.01
    assert info_msg.header == msg.header and (info_msg.width, info_msg.height) == (W, H)
    np.testing.assert_allclose(info_msg.k, [40.0, 0, 31.5, 0, 40.0, 23.5, 0, 0, 1])
    np.testing.assert_allclose(info_msg.p, [40.0, 0, 31.5, -4.0, 0, 40.0, 23.5, 0, 0, 0, 1, 0])
    assert list(info_msg.d) == pytest.approx([0.1, -0.05, 0, 0, 0])
    conf, enc = image_to_numpy(conf_msg)
    assert enc == "mono8" and conf.shape == (H, W) and conf_msg.header == msg.header
    assert (conf[:6] == 0).all() and (conf[6:42] >= 255 // 12).all()
    assert "Traceback" not in proc.output()
    client.unsubscribe(confidences)


def node_values(client, predicate=lambda values: True) -> dict:
    """The newest /diagnostics key/values of the /notorch node that satisfy `predicate`."""
    def find():
        for array in reversed(client.diagnostics.snapshot()):
            for status in array.status:
                if status.name.startswith("/notorch/uda_segmentation"):
                    values = status_values(status)
                    return values if predicate(values) else None
        return None
    return wait_for(find, 20.0, message="/diagnostics of /notorch")


def test_confidence_is_computed_only_while_subscribed(node):
    """Mutant: the probabilities computed for every frame (the logits fetched and the
    softmax run although nobody reads them)."""
    client, _ = node
    topic = "/notorch/segmentation/confidence"
    wait_for(lambda: client.node.count_subscribers(topic) == 0, 20.0,
             message="no confidence subscriber left")
    time.sleep(0.5)  # the node sees the subscriber go
    pub = client.publisher(Image, "/notorch/image", RELIABLE)
    client.wait_for_subscriber(pub)
    _, msg, _ = frame_and_info(client, "nobody_reads_confidence")
    before = node_values(client)
    done = int(before["frames_processed"]) + 3
    for _ in range(100):
        pub.publish(msg)
        time.sleep(0.1)
        if int(node_values(client)["frames_processed"]) >= done:
            break
    after = node_values(client, lambda v: int(v["frames_processed"]) >= done)
    assert after.get("frames_confidence_computed", "0") == before.get(
        "frames_confidence_computed", "0")
    confidences = client.collect(Image, topic, RELIABLE)
    try:
        for _ in range(40):
            pub.publish(msg)
            try:
                confidences.wait_for(timeout=1.0)
                break
            except TimeoutError:
                continue
        grew = node_values(client, lambda v: int(v.get("frames_confidence_computed", "0"))
                           > int(after.get("frames_confidence_computed", "0")))
        assert int(grew["frames_confidence_published"]) >= 1
    finally:
        client.unsubscribe(confidences)


def test_class_names_are_latched_and_on_diagnostics(node):
    """A subscriber that comes after the node started still gets the classes (transient
    local), as JSON where vision_msgs is not installed; /diagnostics names them too."""
    client, proc = node
    labels = client.collect(String, "/notorch/segmentation/label_info", LATCHED)
    msg = labels.wait_for(timeout=20.0, message="the latched label_info")
    data = json.loads(msg.data)
    assert data["class_names"] == list(CLASS_NAMES) and data["ignore"] == 255
    assert len(data["palette"]) == 12 and data["palette"][6] == [128, 64, 128]  # Road

    found = node_values(client)
    assert json.loads(found["class_names"]) == list(CLASS_NAMES)
    assert found["label_set"] == "camvid12"  # the set the model was trained with
    assert found["resize_mode"] == "letterbox" and found["confidence"] == "offered"
    assert found["backend"] == "onnxruntime" and found["network_size"] == f"{W}x{H}"


def test_qos_overrides_reach_the_subscription(node):
    client, _ = node

    def reliability():
        infos = client.node.get_subscriptions_info_by_topic("/notorch/image")
        return [i.qos_profile.reliability for i in infos] or None
    assert wait_for(reliability, 20.0, message="the node's image subscription") == [
        ReliabilityPolicy.RELIABLE]
    # the camera_info beside it keeps the input_qos default (best effort)
    infos = client.node.get_subscriptions_info_by_topic("/notorch/camera_info")
    assert [i.qos_profile.reliability for i in infos] == [
        qos_profile_sensor_data.reliability]
