"""The node process's start-up helpers, in this process: params-file checks, one-line
errors, and the signal handlers' two modes; and, in a child process, that a recorded stop
signal ends the spinning.

    .venv/bin/pytest test/ros/test_process.py -q
"""
from __future__ import annotations

import os
import signal
import sys

import pytest

from helpers.ros import NodeProcess
from uda_seg_ros.process import (
    StartInterrupted,
    StopSignals,
    check_params_file,
    first_line,
    params_files,
)


def test_params_files_are_found_only_inside_ros_args():
    argv = ["node", "--params-file", "not_ros.yaml", "--ros-args", "-p", "a:=1",
            "--params-file", "one.yaml", "--params-file=two.yaml", "--", "--params-file", "x"]
    assert params_files(argv) == ["one.yaml", "two.yaml"]


def test_params_file_checks_name_the_file_and_the_place(tmp_path):
    """Mutants: a valid file with node names under namespaces refused; a YAML error that
    does not say where; a flat file (no ros__parameters) accepted, which rcl would then
    reject with a traceback."""
    good = tmp_path / "good.yaml"
    good.write_text("/**:\n  ros__parameters:\n    input_width: 64\n"
                    "front:\n  uda_segmentation:\n    ros__parameters:\n      device: cpu\n")
    assert check_params_file(str(good)) is None
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**:\n  ros__parameters:\n    input_width: [64\n")
    problem = check_params_file(str(broken))
    assert "broken.yaml: not valid YAML at line 4" in problem and "\n" not in problem
    flat = tmp_path / "flat.yaml"
    flat.write_text("input_width: 64\n")
    assert "expected '<node name or /**>: ros__parameters" in check_params_file(str(flat))
    assert "cannot read it" in check_params_file(str(tmp_path / "missing.yaml"))


def test_first_line_drops_rcl_source_locations():
    exc = RuntimeError("failed to initialize rcl: Couldn't parse params file, at "
                       "/project/src/parser.c:271, at /project/src/rcl/arguments.c:415\nmore")
    assert first_line(exc) == "RuntimeError: failed to initialize rcl: Couldn't parse params file"
    assert first_line(EOFError()) == "EOFError"


def test_a_signal_ends_start_up_once_and_is_only_recorded_afterwards():
    """Mutants: a signal during start-up that does not interrupt it (the model load runs
    on, then rclpy fails on the shut-down context); a second signal that raises again (a
    traceback in the middle of the shutdown)."""
    stop = StopSignals()
    try:
        stop.starting = True
        with pytest.raises(StartInterrupted, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes of this thread
                pass
        assert stop.starting is False
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        assert stop.received == ["SIGTERM", "SIGINT"] and stop.requested
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) != stop._handle


# A node process whose rclpy signal handlers are gone once it runs, so SIGINT reaches
# only StopSignals' Python handler: the state of the process in which the managed node
# slept through SIGINT in CI (rclpy's handler did not wake `executor.spin()`).
DEAF_EXECUTOR_PROBE = """
import sys
import rclpy.signals
from rclpy.node import Node
from uda_seg_ros.process import run_node

class Probe(Node):
    def __init__(self):
        super().__init__("deaf_executor_probe")
        rclpy.signals.uninstall_signal_handlers()
        print("spinning", flush=True)

    def close(self):
        print("closed", flush=True)

sys.exit(run_node(Probe, "deaf_executor_probe", []))
"""


def test_a_stop_signal_ends_spinning_even_when_rclpy_does_not_wake_the_executor(tmp_path):
    """Bug guarded: `executor.spin()` blocks in rcl_wait with no timeout, so a signal that
    only the Python handler records (rclpy's handler missing or not waking it) left the
    node running until killed (test_shutdown_from_unconfigured_loads_nothing, once in CI)."""
    proc = NodeProcess.start([sys.executable, "-c", DEAF_EXECUTOR_PROBE], tmp_path / "probe.log")
    proc.wait_for_output("spinning", 60)
    assert proc.stop(signal.SIGINT, timeout=20) == 0
    log = proc.output()
    assert "stopping (SIGINT)" in log and "closed" in log
