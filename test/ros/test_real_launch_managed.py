"""`ros2 launch uda_seg_ros segment.launch.py managed:=true` under the real jazzy launch
tooling (../shared/ros2-jazzy, skipped where absent), the lifecycle transitions driven from
this process through the node's standard ~/change_state and ~/get_state services
(lifecycle_msgs), with real rclpy.

The module fixture starts two launches at once (torch takes its time to import); each
test owns one of them and ends it:
- "manual": managed:=true, namespace /lc: unconfigured until the test configures it;
- "auto": managed:=true autostart:=true, namespace /lcauto: active by itself.

    .venv/bin/pytest test/ros/test_real_launch_managed.py -q
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from helpers.launching import (
    LaunchProcess,
    call_service,
    frame,
    get_parameters,
    launch_env,
    mask_for,
    ros2_launch,
)
from helpers.ros import RosClient, wait_for

NET_H, NET_W = 48, 64
START_TIMEOUT_S = 240.0  # two torch processes on a loaded 2-core machine
CONFIGURE_TIMEOUT_S = 180.0  # configure loads and warms the model


def params_file(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "input_width": NET_W, "input_height": NET_H, "output_size": "network",
        "warmup_iters": 1, "stats_period": 0.5}}}))
    return path


class Managed:
    """One managed launch and the lifecycle services of its node."""

    def __init__(self, launch: LaunchProcess, ns: str):
        self.launch, self.ns, self.node = launch, ns, f"{ns}/uda_segmentation"

    def wait_for_services(self, client: RosClient) -> None:
        """Until ~/get_state answers; fails at once if the launch ends first."""
        service = client.node.create_client(GetState, f"{self.node}/get_state")
        try:
            def up():
                if not self.launch.alive():
                    raise RuntimeError(f"launch exited with {self.launch.proc.returncode}:\n"
                                       f"{self.launch.output()[-3000:]}")
                return service.wait_for_service(timeout_sec=0.5)
            wait_for(up, START_TIMEOUT_S, message=f"{self.node}/get_state")
        finally:
            client.node.destroy_client(service)

    def state(self, client: RosClient) -> int:
        return call_service(client, GetState, f"{self.node}/get_state",
                            GetState.Request()).current_state.id

    def change(self, client: RosClient, transition: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition
        return call_service(client, ChangeState, f"{self.node}/change_state", request,
                            timeout=CONFIGURE_TIMEOUT_S).success

    def mask(self, client: RosClient, frame_id: str, sec: int) -> Image:
        return mask_for(client, f"{self.ns}/image", f"{self.ns}/segmentation/class_mask",
                        frame(frame_id, sec, 1))

    def no_mask(self, client: RosClient, frame_id: str, seconds: float = 3.0) -> None:
        """Frames sent for `seconds` get no mask back."""
        pub = client.publisher(Image, f"{self.ns}/image", qos_profile_sensor_data)
        masks = client.collect(Image, f"{self.ns}/segmentation/class_mask",
                               qos_profile_sensor_data)
        msg = frame(frame_id, 99, 1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pub.publish(msg)
            time.sleep(0.2)
        assert not [m for m in masks.snapshot() if m.header.frame_id == frame_id], \
            f"{self.node} published masks while not active"

    def ctrl_c_exit(self) -> tuple[int, str]:
        self.launch.ctrl_c()
        return self.launch.wait(120), self.launch.output()


@pytest.fixture(scope="module")
def managed(tmp_path_factory, launch_site, colcon_install, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("managed_launch")
    env = launch_env(launch_site, colcon_install, tmp / "ros_log")
    common = ("uda_seg_ros", "segment.launch.py", f"model_path:={tiny_checkpoint}",
              f"params_file:={params_file(tmp / 'managed.yaml')}", "device:=cpu",
              "managed:=true")
    launches = {
        "manual": Managed(LaunchProcess.start(ros2_launch(*common, "namespace:=lc"),
                                              tmp / "manual.log", env), "/lc"),
        "auto": Managed(LaunchProcess.start(ros2_launch(*common, "namespace:=lcauto",
                                                        "autostart:=true"),
                                            tmp / "auto.log", env), "/lcauto"),
    }
    client = RosClient("uda_seg_managed_test")
    try:
        yield client, launches
    finally:
        for m in launches.values():
            m.launch.kill_group()
        client.close()


def assert_clean_exit(rc: int, log: str) -> None:
    assert rc == 0, log[-3000:]
    assert "process has finished cleanly" in log and "Traceback" not in log, log[-3000:]


def test_every_transition_through_the_standard_services(managed, tiny_checkpoint):
    """managed:=true starts segmentation_lifecycle_node unconfigured, with the launch's
    parameters; configure -> inactive, activate -> masks with the header copied,
    deactivate -> no masks, activate again -> masks, deactivate + cleanup -> unconfigured,
    shutdown -> finalized; Ctrl-C then ends the launch cleanly. Mutants: managed ignored
    (a plain node has no ~/get_state); parameters or namespace not passed to the
    lifecycle node; a node that publishes while inactive."""
    client, launches = managed
    m = launches["manual"]
    m.wait_for_services(client)
    assert m.state(client) == State.PRIMARY_STATE_UNCONFIGURED
    params = get_parameters(client, m.node, ["model_path", "input_width", "device"])
    assert params == {"model_path": str(tiny_checkpoint), "input_width": NET_W, "device": "cpu"}
    assert m.change(client, Transition.TRANSITION_CONFIGURE)
    assert m.state(client) == State.PRIMARY_STATE_INACTIVE
    assert m.change(client, Transition.TRANSITION_ACTIVATE)
    assert m.state(client) == State.PRIMARY_STATE_ACTIVE
    mask = m.mask(client, "lc_first", 11)
    assert (mask.header.frame_id, mask.header.stamp.sec) == ("lc_first", 11)
    assert (mask.height, mask.width, mask.encoding) == (NET_H, NET_W, "mono8")
    assert m.change(client, Transition.TRANSITION_DEACTIVATE)
    assert m.state(client) == State.PRIMARY_STATE_INACTIVE
    m.no_mask(client, "lc_inactive")
    assert m.change(client, Transition.TRANSITION_ACTIVATE)
    assert m.mask(client, "lc_again", 12).header.stamp.sec == 12
    assert m.change(client, Transition.TRANSITION_DEACTIVATE)
    assert m.change(client, Transition.TRANSITION_CLEANUP)
    assert m.state(client) == State.PRIMARY_STATE_UNCONFIGURED
    assert m.change(client, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert m.state(client) == State.PRIMARY_STATE_FINALIZED
    assert_clean_exit(*m.ctrl_c_exit())


def test_autostart_reaches_active_and_a_deactivate_holds(managed):
    """managed:=true autostart:=true: the launch configures and activates the node by
    itself; masks come back; a deactivate from outside is not undone by the launch; Ctrl-C
    ends it cleanly. Mutants: autostart without the activate step; the activate handler
    firing on every arrival in inactive."""
    client, launches = managed
    m = launches["auto"]
    m.wait_for_services(client)
    wait_for(lambda: m.state(client) == State.PRIMARY_STATE_ACTIVE, CONFIGURE_TIMEOUT_S,
             interval=0.5, message=f"{m.node} active")
    assert m.mask(client, "auto_frame", 21).header.frame_id == "auto_frame"
    assert m.change(client, Transition.TRANSITION_DEACTIVATE)
    time.sleep(2.0)  # time for a wrong handler to re-activate it
    assert m.state(client) == State.PRIMARY_STATE_INACTIVE
    m.no_mask(client, "auto_inactive")
    assert_clean_exit(*m.ctrl_c_exit())
