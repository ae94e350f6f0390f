"""The upstream ROS 2 launch tooling (jazzy) for tests, and processes launched with it.

`launch`, `launch_ros`, `ros2launch`, `ros2cli` and `ros2pkg` are not on the package index;
their unmodified sources sit in ../shared/ros2-jazzy (see its README). They are never
copied into this project: `install_launch_site(site)` pip-installs them (--no-deps, from a
scratch copy, because pip builds in the source tree and ../shared may be read-only) into
a temporary folder, with osrf-pycommon and lark from the index and a stub for
`composition_interfaces`. The conftest's session fixture `launch_site` does that once per
test session and skips with "../shared/ros2-jazzy absent" on a clone without it.

- `launch_env(site, install, extra)`: a ROS child environment (helpers.ros.ros_env) as
  `source install/setup.bash` would leave it, plus the launch site on PYTHONPATH;
- `ros2_launch(*args)`: argv of `ros2 launch` (ros2cli's entry point);
- `LaunchProcess`: a launch in its own process group with stdin from /dev/null
  (non-interactive), `ctrl_c()` sends SIGINT to the whole group as a terminal or a
  service manager does, `node_pid()` reads launch's "process started with pid [N]";
- `Recorded`: results a scenario fixture records, each re-raised in the test that reads it.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from helpers.ros import NodeProcess, ros_env

SHARED = ROOT.parent / "shared" / "ros2-jazzy"
ABSENT = (f"../shared/ros2-jazzy absent ({SHARED}): the upstream launch / launch_ros / "
          f"ros2launch sources the real-launch tests install")
SOURCES = ("launch", "launch_ros", "ros2launch", "ros2cli", "ros2pkg")
INDEX_DEPENDENCIES = ("osrf-pycommon", "lark")
LAUNCH_FILE = ROOT / "launch" / "segment.launch.py"
IMAGE_H, IMAGE_W = 12, 16  # the frames the tests send

# launch_ros imports composition_interfaces.srv at import time (for composable nodes) and
# uses LoadNode.Request / .Response in annotations; the message package does not install
# here, and a launch file with ordinary nodes never calls those services.
COMPOSITION_STUB = '''"""Stub written by the uda_seg tests: names only, for launch_ros's imports."""


class _Service:
    class Request:
        pass

    class Response:
        pass


class LoadNode(_Service):
    pass


class UnloadNode(_Service):
    pass


class ListNodes(_Service):
    pass
'''


def pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", *args], cwd=cwd, check=False,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"pip install {' '.join(args)} failed:\n" \
        f"{result.stdout[-2000:]}{result.stderr[-3000:]}"


def install_launch_site(site: Path) -> Path:
    """pip-install the jazzy launch tooling into `site` (then put `site` on PYTHONPATH)."""
    scratch = site.parent / f"{site.name}_sources"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "test", "doc", "examples",
                                    "__pycache__")
    for name in SOURCES:
        shutil.copytree(SHARED / name, scratch / name, ignore=ignore)
    pip("--no-deps", "--no-build-isolation", "--target", str(site),
        *(str(scratch / name) for name in SOURCES), cwd=scratch)
    pip("--target", str(site), *INDEX_DEPENDENCIES, cwd=scratch)
    stub = site / "composition_interfaces"
    stub.mkdir()
    (stub / "__init__.py").write_text("")
    (stub / "srv.py").write_text(COMPOSITION_STUB)
    shutil.rmtree(scratch)
    return site


def install_site_packages(install: Path) -> Path:
    """lib/python3.X/site-packages of a colcon install prefix."""
    return next((install / "lib").glob("python3*/site-packages"))


def launch_env(site: Path, install: Path, log_dir: Path,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """What `source install/setup.bash` gives a shell, for launch processes on our domain."""
    path = [str(install_site_packages(install)), str(site), os.environ.get("PYTHONPATH", "")]
    return ros_env({"PYTHONPATH": os.pathsep.join(p for p in path if p),
                    "AMENT_PREFIX_PATH": str(install), "ROS_LOG_DIR": str(log_dir),
                    **(extra or {})})


def ros2_launch(*args: str) -> list[str]:
    """`ros2 launch ARGS`: ros2cli's console script as its entry point runs it, exit status
    included (a bare `main()` would drop it and exit 0 after a failed launch)."""
    return [sys.executable, "-c", "import sys; from ros2cli.cli import main; sys.exit(main())",
            "launch", *args]


def launch_service(*args: str) -> list[str]:
    """The repo's launch file under a plain launch.LaunchService (launch_service_probe.py)."""
    return [sys.executable, str(Path(__file__).with_name("launch_service_probe.py")),
            str(LAUNCH_FILE), *args]


class LaunchProcess(NodeProcess):
    """A launch process (and the node it starts) in a process group of its own."""

    @classmethod
    def start(cls, argv: list[str], log_path: str | Path, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> LaunchProcess:
        log_path = Path(log_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env or ros_env(), cwd=cwd,
                                    start_new_session=True)
        return cls(proc, log_path)

    def ctrl_c(self) -> None:
        """SIGINT to the whole group, as Ctrl-C in a terminal (or systemd's stop) sends it."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)

    def node_pid(self) -> int:
        found = re.search(r"process started with pid \[(\d+)\]", self.output())
        assert found, f"no 'process started with pid' in {self.log_path}:\n{self.output()[-2000:]}"
        return int(found.group(1))

    def node_argv(self) -> list[str]:
        """The node process's command line (while it runs)."""
        raw = Path(f"/proc/{self.node_pid()}/cmdline").read_bytes()
        return raw.decode().split("\0")[:-1]

    def kill_group(self) -> None:
        """Last resort at teardown: nothing of this launch may outlive the test module."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.returncode is None:
            self.proc.wait(10)


class Recorded:
    """Results of a scenario a fixture ran once: `record(name, fn)` keeps fn()'s value or
    its exception; `[name]` returns the value or re-raises, in the test that asks."""

    def __init__(self):
        self._results: dict[str, tuple[bool, object]] = {}

    def record(self, name: str, fn):
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised by the test that reads `name`
            self._results[name] = (False, exc)
            return None
        self._results[name] = (True, value)
        return value

    def ok(self, name: str) -> bool:
        return self._results.get(name, (False, None))[0]

    def __getitem__(self, name: str):
        if name not in self._results:
            failed = [(k, v) for k, (ok, v) in self._results.items() if not ok]
            first = f"{failed[0][0]!r}: {failed[0][1]}" if failed else "none recorded"
            raise RuntimeError(f"{name!r} was not recorded: an earlier step of the scenario "
                               f"failed, first {first}")
        ok, value = self._results[name]
        if not ok:
            raise RuntimeError(f"recording {name!r} failed: {value}") from value
        return value


def call_service(client, srv_type, name: str, request, timeout: float = 60.0):
    """Call service `name` from the RosClient's node (waiting for it first); the response."""
    import time

    service = client.node.create_client(srv_type, name)
    try:
        if not service.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} did not appear within {timeout} s")
        future = service.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no response from {name} within {timeout} s")
            time.sleep(0.02)
        return future.result()
    finally:
        client.node.destroy_client(service)


def get_parameters(client, node: str, names: list[str]) -> dict:
    """The values of parameters `names` of node `node` (fully qualified), by its service."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    response = call_service(client, GetParameters, f"{node}/get_parameters",
                            GetParameters.Request(names=names))
    return {name: parameter_value_to_python(value)
            for name, value in zip(names, response.values)}


def frame(frame_id: str, sec: int, nanosec: int):
    """A small rgb8 Image with this header (its pixels seeded by `sec`)."""
    import numpy as np

    from uda_seg_ros.conversions import numpy_to_image

    pixels = np.random.default_rng(sec).integers(0, 256, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    msg = numpy_to_image(pixels, "rgb8")
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame_id, sec, nanosec
    return msg


def mask_for(client, in_topic: str, out_topic: str, msg, timeout: float = 90.0):
    """Publish `msg` on in_topic (again each second while discovery settles) until the mask
    with its frame_id arrives on out_topic."""
    import time

    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    pub = client.publisher(Image, in_topic, qos_profile_sensor_data)
    masks = client.collect(Image, out_topic, qos_profile_sensor_data)
    client.wait_for_subscriber(pub, timeout=60)
    deadline = time.monotonic() + timeout
    while True:
        pub.publish(msg)
        try:
            return masks.wait_for(lambda m: m.header.frame_id == msg.header.frame_id, 1.0)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
