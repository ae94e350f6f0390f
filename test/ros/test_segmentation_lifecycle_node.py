"""The managed node `segmentation_lifecycle_node`, driven through the standard lifecycle
services (~/change_state, ~/get_state) from this process with real rclpy.

Three node processes, one per path through the state machine:
- /lca: configure -> activate -> deactivate -> activate -> deactivate -> cleanup ->
  configure -> shutdown from inactive, then SIGINT (exit 0, summary, stats_file);
- /lcb: a configure that fails (its model file is not there yet) -> configure ->
  activate -> shutdown from active, then SIGTERM;
- /lcc: shutdown from unconfigured (no model is ever loaded).

    .venv/bin/pytest test/ros/test_segmentation_lifecycle_node.py -q
"""
from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from helpers.ros import NodeProcess, RosClient, wait_for
from uda_seg_ros.conversions import image_to_numpy, numpy_to_image
from uda_seg_ros.diagnostics import status_values

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def lifecycle_argv(ns: str, model, *params: str) -> list[str]:
    args = ["--ros-args", "-r", f"__ns:={ns}", "-p", f"model_path:={model}",
            "-p", "input_width:=64", "-p", "input_height:=48", "-p", "warmup_iters:=1",
            "-p", "stats_period:=0.2"]
    for param in params:
        args += ["-p", param]
    return NodeProcess.python_module("uda_seg_ros.segmentation_lifecycle_node", *args)


class Managed:
    """One lifecycle node as its manager sees it: its two services and its topics."""

    def __init__(self, client: RosClient, ns: str, proc: NodeProcess):
        self.client, self.ns, self.proc = client, ns, proc
        self.node = f"{ns}/uda_segmentation"

    def state(self) -> str:
        return self.client.call(GetState, f"{self.node}/get_state", GetState.Request(),
                                timeout=120).current_state.label

    def change(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.client.call(ChangeState, f"{self.node}/change_state", request,
                                timeout=180).success


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("lifecycle")
    late_model = tmp / "arrives_later.pt"
    procs = {
        "/lca": NodeProcess.start(lifecycle_argv("/lca", tiny_checkpoint,
                                                 f"stats_file:={tmp / 'lca.json'}"),
                                  tmp / "lca.log"),
        "/lcb": NodeProcess.start(lifecycle_argv("/lcb", late_model), tmp / "lcb.log"),
        "/lcc": NodeProcess.start(lifecycle_argv("/lcc", tiny_checkpoint), tmp / "lcc.log"),
    }
    client = RosClient()
    client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", RELIABLE)
    try:
        for proc in procs.values():
            proc.wait_for_output("unconfigured: waiting for the configure transition", 120)
        yield client, {ns: Managed(client, ns, proc) for ns, proc in procs.items()}, tmp
    finally:
        for proc in procs.values():
            proc.send(signal.SIGINT)
        for proc in procs.values():
            if proc.proc.returncode is None:
                proc.wait()
        client.close()


def counters(client: RosClient, ns: str, predicate, timeout: float = 20.0) -> dict:
    """The newest /diagnostics values of node `ns` that satisfy `predicate`."""
    def find():
        for array in reversed(client.diagnostics.snapshot()):
            for status in array.status:
                if status.name.startswith(f"{ns}/uda_segmentation"):
                    values = status_values(status)
                    return values if predicate(values) else None
        return None
    return wait_for(find, timeout, message=f"/diagnostics from {ns} matching the test")


def serve(pub, masks, msg, tries: int = 40):
    """Publish until the mask of `msg` (by frame_id) comes back."""
    frame_id = msg.header.frame_id
    for _ in range(tries):
        pub.publish(msg)
        try:
            return masks.wait_for(lambda m: m.header.frame_id == frame_id, timeout=1.0)
        except TimeoutError:
            continue
    raise AssertionError(f"no mask for {frame_id}")


def frame(frame_id: str) -> Image:
    rgb = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    msg.header.frame_id = frame_id
    msg.header.stamp.sec = 7
    return msg


def test_every_transition_through_the_standard_services(nodes):
    """Mutants: configure that does not load the model (activate would then fail), an
    activate that does not subscribe or enable the managed publishers (no masks), a
    deactivate that still processes (masks while inactive) or stops counting, a cleanup
    that keeps serving, a second configure that cannot rebuild what cleanup destroyed,
    shutdown refused from inactive, no summary or stats_file after the final SIGINT."""
    client, managed, tmp = nodes
    node = managed["/lca"]
    assert node.state() == "unconfigured"
    assert node.change(Transition.TRANSITION_CONFIGURE)
    assert node.state() == "inactive"
    node.proc.wait_for_output("configured: model loaded and warmed up")
    assert node.change(Transition.TRANSITION_ACTIVATE) and node.state() == "active"

    pub = client.publisher(Image, "/lca/image", qos_profile_sensor_data)
    masks = client.collect(Image, "/lca/segmentation/class_mask", RELIABLE)
    client.wait_for_subscriber(pub)
    sent = frame("active_1")
    out = serve(pub, masks, sent)
    assert out.header == sent.header and image_to_numpy(out)[0].shape == (30, 40)

    assert node.change(Transition.TRANSITION_DEACTIVATE) and node.state() == "inactive"
    before = counters(client, "/lca", lambda v: int(v["frames_processed"]) >= 1)
    for i in range(3):
        pub.publish(frame(f"inactive_{i}"))
    after = counters(client, "/lca", lambda v: int(v.get("frames_inactive", 0)) >= 1)
    assert after["frames_processed"] == before["frames_processed"]
    assert not [m for m in masks.snapshot() if m.header.frame_id.startswith("inactive_")]

    assert node.change(Transition.TRANSITION_ACTIVATE)
    serve(pub, masks, frame("active_2"))
    assert node.change(Transition.TRANSITION_DEACTIVATE)
    assert node.change(Transition.TRANSITION_CLEANUP) and node.state() == "unconfigured"
    node.proc.wait_for_output("unconfigured: model freed")
    assert node.change(Transition.TRANSITION_CONFIGURE) and node.state() == "inactive"
    assert node.change(Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert node.state() == "finalized"

    assert node.proc.stop(signal.SIGINT) == 0
    log = node.proc.output()
    assert "summary: fps=" in log and "Traceback" not in log
    stats = json.loads((tmp / "lca.json").read_text())
    assert stats["device"] == "cpu"


def test_a_failed_configure_says_why_and_can_be_retried_then_shutdown_from_active(
        nodes, tiny_checkpoint):
    """Mutants: a configure failure that crashes the node or leaves it half-configured
    (the retry then fails), shutdown refused from active."""
    client, managed, tmp = nodes
    node = managed["/lcb"]
    assert not node.change(Transition.TRANSITION_CONFIGURE)
    assert node.state() == "unconfigured"
    failed = [line for line in node.proc.output().splitlines() if "configure failed" in line]
    assert len(failed) == 1 and "model file not found" in failed[0] and "[ERROR]" in failed[0]
    shutil.copy(tiny_checkpoint, tmp / "arrives_later.pt")
    assert node.change(Transition.TRANSITION_CONFIGURE)
    assert node.change(Transition.TRANSITION_ACTIVATE) and node.state() == "active"
    pub = client.publisher(Image, "/lcb/image", qos_profile_sensor_data)
    masks = client.collect(Image, "/lcb/segmentation/class_mask", RELIABLE)
    client.wait_for_subscriber(pub)
    serve(pub, masks, frame("lcb"))
    assert node.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert node.state() == "finalized"
    assert node.proc.stop(signal.SIGTERM) == 0
    assert "Traceback" not in node.proc.output()


def test_shutdown_from_unconfigured_loads_nothing(nodes):
    """Mutant: shutdown refused (or the model loaded) from unconfigured."""
    _, managed, _ = nodes
    node = managed["/lcc"]
    assert node.change(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert node.state() == "finalized"
    assert node.proc.stop(signal.SIGINT) == 0
    log = node.proc.output()
    assert "]: loading " not in log and "Traceback" not in log
