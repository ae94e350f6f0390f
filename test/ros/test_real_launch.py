"""launch/segment.launch.py under the real ROS 2 launch tooling (jazzy, from
../shared/ros2-jazzy, pip-installed into a temporary site once per session; skipped where
it is absent), with the package built by colcon (conftest.colcon_install) and real rclpy
in this process.

One scenario for the module (fixture `launched`), run once, its results recorded and
asserted by the tests below in any order; two launches start in parallel:
- "service": the repo's launch file under a plain `launch.LaunchService` (interactive, so
  Ctrl-C reaches the node once), every argument given: params_file (a file of the test's
  that also names a wrong model and device, which the arguments must override),
  model_path, image_topic:=/svc_cam/image_raw, device:=cpu, namespace:=svc,
  use_sim_time:=true (this process publishes /clock from 1000 s);
- "cli": `ros2 launch uda_seg_ros segment.launch.py` (non-interactive: stdin is not a
  terminal), found through AMENT_PREFIX_PATH, with the installed params file,
  namespace:=/cli and a relative image_topic:=camera/image_raw.
Each gets a frame and returns a mask; then both get Ctrl-C (SIGINT to the process group),
the cli launch a second one 0.5 s later (a double Ctrl-C while the node shuts down).

    .venv/bin/pytest test/ros/test_real_launch.py -q
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from helpers.launching import (
    IMAGE_H,
    IMAGE_W,
    LAUNCH_FILE,
    LaunchProcess,
    Recorded,
    frame,
    get_parameters,
    launch_env,
    launch_service,
    mask_for,
    ros2_launch,
)
from helpers.ros import RosClient, wait_for
from uda_seg_ros.diagnostics import status_values

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SIM_START_S = 1000  # /clock published by this process starts here (wall time is ~1.7e9 s)
NET_H, NET_W = 48, 64  # the service launch's params file
ARGUMENTS = ("params_file", "model_path", "image_topic", "device", "namespace", "use_sim_time",
             "managed", "autostart")
SERVICE_NODE, CLI_NODE = "/svc/uda_segmentation", "/cli/uda_segmentation"
SECOND_CTRL_C_S = 0.5  # the cli launch gets Ctrl-C twice, this far apart
READY_TIMEOUT_S = 240.0  # two torch processes starting at once on a loaded 2-core machine
PARAMS = ["model_path", "device", "use_sim_time", "input_width", "input_height", "output_size",
          "warmup_iters"]


def service_params_file(path: Path, stats_file: Path) -> Path:
    """Node-specific keys (namespace + name) that the launch arguments must override."""
    path.write_text(yaml.safe_dump({SERVICE_NODE: {"ros__parameters": {
        "model_path": "/nonexistent/from_the_params_file.pt", "device": "cuda:7",
        "input_width": NET_W, "input_height": NET_H, "output_size": "network",
        "warmup_iters": 1, "stats_period": 0.2, "stats_file": str(stats_file)}}}))
    return path


class ClockPublisher:
    """/clock from SIM_START_S, advancing with wall time, every 20 ms, until stopped."""

    def __init__(self, client: RosClient):
        self._pub = client.publisher(Clock, "/clock", 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.02):
            now = SIM_START_S + (time.monotonic() - start)
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(now), int((now % 1) * 1e9)
            self._pub.publish(msg)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def node_diagnostics(diagnostics, node: str, predicate=lambda values: True,
                     timeout: float = 60.0) -> tuple[DiagnosticArray, dict]:
    """The first /diagnostics array with a status of `node` whose values match."""
    def find():
        for array in diagnostics.snapshot():
            for status in array.status:
                if status.name.startswith(node) and predicate(status_values(status)):
                    return array, status_values(status)
        return None
    return wait_for(find, timeout, message=f"/diagnostics from {node}")


def run_scenario(tmp: Path, site: Path, install: Path, checkpoint: Path) -> Recorded:
    got = Recorded()
    stats = tmp / "svc_stats.json"
    env = launch_env(site, install, tmp / "ros_log")
    service = LaunchProcess.start(launch_service(
        f"params_file:={service_params_file(tmp / 'svc.yaml', stats)}",
        f"model_path:={checkpoint}", "image_topic:=/svc_cam/image_raw", "device:=cpu",
        "namespace:=svc", "use_sim_time:=true"), tmp / "service.log", env)
    cli = LaunchProcess.start(ros2_launch(
        "uda_seg_ros", "segment.launch.py", f"model_path:={checkpoint}", "namespace:=/cli",
        "image_topic:=camera/image_raw"), tmp / "cli.log", env)
    client = RosClient("uda_seg_launch_test")
    clock = ClockPublisher(client)
    try:
        diagnostics = client.collect(DiagnosticArray, "/diagnostics", RELIABLE)
        got.record("service ready", lambda: service.wait_for_output("ready:", READY_TIMEOUT_S))
        got.record("cli ready", lambda: cli.wait_for_output("ready:", READY_TIMEOUT_S))
        if got.ok("service ready"):
            got.record("service params", lambda: get_parameters(client, SERVICE_NODE, PARAMS))
            got.record("service mask", lambda: mask_for(
                client, "/svc_cam/image_raw", "/svc/segmentation/class_mask",
                frame("svc_frame", 1234, 5678)))
            got.record("sim diagnostics", lambda: node_diagnostics(
                diagnostics, SERVICE_NODE, lambda v: int(v["frames_processed"]) >= 1))
        if got.ok("cli ready"):
            got.record("cli argv", cli.node_argv)
            got.record("cli params", lambda: get_parameters(client, CLI_NODE, PARAMS))
            got.record("cli mask", lambda: mask_for(
                client, "/cli/camera/image_raw", "/cli/segmentation/class_mask",
                frame("cli_frame", 4321, 8765)))
        for launch in (service, cli):  # both at once: teardown with torch takes seconds
            launch.ctrl_c()
        time.sleep(SECOND_CTRL_C_S)
        cli.ctrl_c()  # a second Ctrl-C while the node shuts down
        got.record("service exit", lambda: (service.wait(120), service.output(),
                                            stats.read_text() if stats.exists() else None))
        got.record("cli exit", lambda: (cli.wait(120), cli.output()))
    finally:
        clock.stop()
        for launch in (service, cli):
            launch.kill_group()
        client.close()
    got.logs = {"service": service.output(), "cli": cli.output()}
    return got


@pytest.fixture(scope="module")
def launched(tmp_path_factory, launch_site, colcon_install, tiny_checkpoint) -> Recorded:
    return run_scenario(tmp_path_factory.mktemp("real_launch"), launch_site, colcon_install,
                        tiny_checkpoint)


def node_output(log: str) -> str:
    """The node's own lines in a launch log (launch prefixes them with its process name)."""
    return "\n".join(line for line in log.splitlines() if line.startswith("[segmentation_node"))


# ------------------------------------------------------------------------- launch.LaunchService

def test_launch_service_arguments_override_the_params_file(launched, tiny_checkpoint):
    """model_path, device and use_sim_time given to the launch reach the node over a params
    file that names another model and device. Mutants: the overrides dict dropped or placed
    before params_file (the node would load the params file's missing model); use_sim_time
    parsed as always false."""
    params = launched["service params"]
    assert params["model_path"] == str(tiny_checkpoint)
    assert params["device"] == "cpu"
    assert params["use_sim_time"] is True


def test_launch_service_params_file_values_apply(launched):
    """The params file's network size and output_size reach the node: its mask comes back
    at the network size (48x64), not the input's. Mutant: params_file not passed to the
    node (the defaults are 480x360 and masks at the input size)."""
    params = launched["service params"]
    assert (params["input_width"], params["input_height"]) == (NET_W, NET_H)
    assert params["output_size"] == "network" and params["warmup_iters"] == 1
    mask = launched["service mask"]
    assert (mask.height, mask.width, mask.encoding) == (NET_H, NET_W, "mono8")


def test_launch_service_namespace_and_absolute_remap(launched):
    """An Image published on the remapped /svc_cam/image_raw comes back as
    /svc/segmentation/class_mask with its header unchanged. Mutants: the remap dropped (the
    node listens on /svc/image and no mask comes), the namespace dropped (the mask appears
    on /segmentation/class_mask)."""
    mask = launched["service mask"]
    assert mask.header.frame_id == "svc_frame"
    assert (mask.header.stamp.sec, mask.header.stamp.nanosec) == (1234, 5678)


def test_use_sim_time_puts_the_node_on_the_published_clock(launched):
    """With use_sim_time:=true the node's clock is /clock: its /diagnostics carry stamps
    from this process's /clock (1000 s on), not wall time (~1.7e9 s), and its timer runs on
    it. Mutant: use_sim_time not passed (or parsed false)."""
    array, values = launched["sim diagnostics"]
    assert SIM_START_S <= array.header.stamp.sec < SIM_START_S + 3600, array.header.stamp
    assert int(values["frames_processed"]) >= 1


def test_launch_service_ctrl_c_stops_the_node_cleanly(launched):
    """Ctrl-C to an interactive LaunchService's group (the node gets one SIGINT): launch
    exits 0, the node exits 0 after its summary line and writes its stats_file with the
    served frame. Mutants: a node that dies on SIGINT (traceback, exit -2); stats_file from
    the params file not applied."""
    rc, log, stats = launched["service exit"]
    assert rc == 0, log[-3000:]
    assert "process has finished cleanly" in log, log[-3000:]
    assert "summary: fps=" in node_output(log) and "Traceback" not in log, log[-3000:]
    assert stats is not None, "stats_file was not written"
    assert json.loads(stats)["counters"]["processed"] >= 1


# ------------------------------------------------------------------------- ros2 launch

def test_ros2_launch_runs_the_installed_node_with_the_installed_params_file(
        launched, colcon_install, tiny_checkpoint):
    """`ros2 launch uda_seg_ros ...` finds the package through AMENT_PREFIX_PATH and runs the
    colcon-installed executable with share/uda_seg_ros/config/segment.yaml, then the
    overrides; model_path given, device not (the params file's `auto` stays). Mutants: the
    default params_file from the source tree; an empty device override."""
    argv = launched["cli argv"]
    executable = colcon_install / "lib" / "uda_seg_ros" / "segmentation_node"
    assert str(executable) in argv[:2], argv
    params_files = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--params-file"]
    installed = colcon_install / "share" / "uda_seg_ros" / "config" / "segment.yaml"
    assert params_files[0] == str(installed), argv
    assert len(params_files) == 2, argv  # the installed file, then the overrides
    params = launched["cli params"]
    assert params["model_path"] == str(tiny_checkpoint)
    assert params["device"] == "auto" and params["use_sim_time"] is False
    assert (params["input_width"], params["input_height"]) == (0, 0)  # the model's own


def test_ros2_launch_namespace_and_relative_remap(launched):
    """A relative image_topic resolves in the namespace: an Image on /cli/camera/image_raw
    comes back on /cli/segmentation/class_mask, header unchanged, at the input size (the
    installed params file's output_size: input). Mutants: remap or namespace dropped."""
    mask = launched["cli mask"]
    assert mask.header.frame_id == "cli_frame"
    assert (mask.header.stamp.sec, mask.header.stamp.nanosec) == (4321, 8765)
    assert (mask.height, mask.width, mask.encoding) == (IMAGE_H, IMAGE_W, "mono8")


def test_ros2_launch_ctrl_c_twice_stops_the_node_cleanly(launched):
    """Ctrl-C to a non-interactive `ros2 launch` (under systemd, in CI), twice 0.5 s apart:
    the node gets the group's SIGINT, the one launch forwards, and the second Ctrl-C's
    while it shuts down. launch exits 0 and the node exits 0 after its summary line, no
    traceback. Mutant (the node before its StopSignals fix): a second SIGINT that interrupts
    the shutdown (KeyboardInterrupt traceback, exit -2). With one Ctrl-C alone that node
    failed too, in about one run of four (the forwarded SIGINT lands during the shutdown
    or not)."""
    rc, log = launched["cli exit"]
    assert rc == 0, log[-3000:]
    assert "process has finished cleanly" in log, log[-3000:]
    assert "summary: fps=" in node_output(log) and "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------------- no node started

def run_ros2_launch(launch_site, colcon_install, tmp_path, *args: str):
    return subprocess.run(ros2_launch(*args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, check=False,
                          env=launch_env(launch_site, colcon_install, tmp_path / "ros_log"))


def test_ros2_launch_show_args_lists_every_argument(launch_site, colcon_install, tmp_path):
    """`ros2 launch --show-args` on the installed launch file lists the eight arguments,
    params_file defaulting to the installed segment.yaml, managed and autostart to false.
    Mutants: an argument not declared; the default params file from the source tree."""
    result = run_ros2_launch(launch_site, colcon_install, tmp_path, "--show-args",
                             "uda_seg_ros", "segment.launch.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = dict(re.findall(r"'(\w+)':\n(?:.*\n)*?\s+\(default: '(.*?)'\)", result.stdout))
    assert tuple(found) == ARGUMENTS, result.stdout
    installed = colcon_install / "share" / "uda_seg_ros" / "config" / "segment.yaml"
    assert found["params_file"] == str(installed)
    assert (found["managed"], found["autostart"], found["use_sim_time"]) == ("false",) * 3


def test_a_misspelt_flag_is_a_one_line_error(launch_site, colcon_install, tmp_path):
    """managed:=ture fails the launch with one line naming the argument and the values it
    takes, and starts no node. Mutant: anything but 'true' silently read as false (a
    plain node served when a managed one was asked for)."""
    result = run_ros2_launch(launch_site, colcon_install, tmp_path, "uda_seg_ros",
                             "segment.launch.py", "model_path:=/x.pt", "managed:=ture")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "launch argument managed:='ture': expected true or false" in output, output
    assert "process started" not in output and "Traceback" not in output, output


# ------------------------------------------------------------------------- the description

@pytest.fixture
def real_launch(launch_site, colcon_install, monkeypatch):
    """The launch file's module loaded against the real launch / launch_ros in this process
    (the site on sys.path for this test only; the modules imported from it dropped after)."""
    import importlib.util
    import sys

    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(launch_site))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(colcon_install))
    spec = importlib.util.spec_from_file_location("segment_launch_real", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for name in set(sys.modules) - before:
        origin = str(getattr(sys.modules[name], "__file__", None) or "")
        if origin.startswith(str(launch_site)) or name == spec.name:
            del sys.modules[name]


def performed(module, **arguments):
    """Visit the launch description with a real LaunchContext: the actions it returns."""
    import launch

    context = launch.LaunchContext()
    context.launch_configurations.update(arguments)
    actions = []
    for entity in module.generate_launch_description().entities:
        actions += entity.visit(context) or []
    return context, actions


def test_managed_launch_builds_a_lifecycle_node_like_the_plain_one(real_launch):
    """managed:=true returns a launch_ros LifecycleNode running segmentation_lifecycle_node,
    named uda_segmentation, in the same namespace and with the same remaps as the plain
    Node; without autostart nothing else. Mutants: managed ignored (a plain Node); the
    namespace or remap not passed to the lifecycle node; autostart events without autostart."""
    from launch_ros.actions import LifecycleNode, Node

    shown = {}
    for managed in ("false", "true"):
        context, actions = performed(real_launch, managed=managed, namespace="front",
                                     image_topic="/cam/image_raw", model_path="/m.pt")
        (node,) = actions
        node._perform_substitutions(context)  # what execute() does first
        shown[managed] = (type(node), node.node_package, node.node_executable,
                          node.node_name, node.expanded_remapping_rules)
    assert shown["false"][0] is Node
    assert shown["true"][0] is LifecycleNode
    assert shown["false"][1:] == ("uda_seg_ros", "segmentation_node", "/front/uda_segmentation",
                                  [("image", "/cam/image_raw")])
    assert shown["true"][1:] == ("uda_seg_ros", "segmentation_lifecycle_node",
                                 *shown["false"][3:])


def test_autostart_configures_then_activates_only_after_configuring(real_launch):
    """autostart:=true emits ChangeState(configure) for this node and registers a handler that
    emits ChangeState(activate) when it goes configuring -> inactive, and not when it goes
    deactivating -> inactive (a deactivated node stays deactivated). Mutants: no configure;
    activate on every arrival in inactive; the events matching other lifecycle nodes."""
    import lifecycle_msgs.msg as lc
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch_ros.actions import LifecycleNode
    from launch_ros.events.lifecycle import ChangeState, StateTransition

    _, actions = performed(real_launch, managed="true", autostart="true")
    (node,) = [a for a in actions if isinstance(a, LifecycleNode)]
    other = LifecycleNode(package="p", executable="e", name="other", namespace="")
    (configure,) = [a for a in actions if isinstance(a, EmitEvent)]
    assert isinstance(configure.event, ChangeState)
    assert configure.event.transition_id == lc.Transition.TRANSITION_CONFIGURE
    assert configure.event.lifecycle_node_matcher(node)
    assert not configure.event.lifecycle_node_matcher(other)
    (register,) = [a for a in actions if isinstance(a, RegisterEventHandler)]
    handler = register.event_handler

    def transition(action, start: str, goal: str) -> StateTransition:
        msg = lc.TransitionEvent()
        msg.start_state.label, msg.goal_state.label = start, goal
        return StateTransition(action=action, msg=msg)

    assert handler.matches(transition(node, "configuring", "inactive"))
    assert not handler.matches(transition(node, "deactivating", "inactive"))
    assert not handler.matches(transition(other, "configuring", "inactive"))
    (activate,) = handler.entities
    assert activate.event.transition_id == lc.Transition.TRANSITION_ACTIVATE
    assert activate.event.lifecycle_node_matcher(node)
