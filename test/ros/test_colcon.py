"""`colcon build` of the ament_python package in a temporary workspace, and what lands in
install/uda_seg_ros: the node executable, launch file, params file, package.xml and the
ament index marker that `ros2 launch uda_seg_ros ...` needs, and the developer tools
(uda_seg_tools, `uda-seg-bag`) beside the node.

    .venv/bin/pytest test/ros/test_colcon.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import colcon_core  # noqa: F401  (dev extra: a missing one is a broken install, not a skip)
import pytest

from helpers import ROOT


@pytest.fixture(scope="module")
def install(colcon_install) -> Path:
    """The session's colcon build (conftest.colcon_install), shared with the launch tests."""
    return colcon_install


def test_installed_layout(install):
    for executable in ("segmentation_node", "segmentation_lifecycle_node"):
        node = install / "lib" / "uda_seg_ros" / executable
        assert node.is_file() and os.access(node, os.X_OK), executable
    share = install / "share" / "uda_seg_ros"
    assert (share / "launch" / "segment.launch.py").read_text() == \
        (ROOT / "launch" / "segment.launch.py").read_text()
    assert (share / "config" / "segment.yaml").read_text() == \
        (ROOT / "config" / "segment.yaml").read_text()
    assert "<name>uda_seg_ros</name>" in (share / "package.xml").read_text()
    index = install / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "uda_seg_ros").is_file()
    site = next((install / "lib").glob("python3*/site-packages"))
    assert (site / "uda_seg_ros" / "segmentation_node.py").is_file()
    assert (site / "uda_seg_ros" / "fastdds_large_frames.xml").is_file()  # package data
    assert (site / "uda_seg_core" / "inference" / "segmenter.py").is_file()
    # The developer tools are their own package, installed beside the node with their command.
    assert (site / "uda_seg_tools" / "bag_cli.py").is_file()
    bag = install / "lib" / "uda_seg_ros" / "uda-seg-bag"
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    shown = subprocess.run([str(bag), "--help"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert all(f"\n    {command} " in shown.stdout for command in ("write", "play", "evaluate"))


def test_ament_index_finds_the_installed_share(install, monkeypatch):
    from ament_index_python import packages as ament

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(install))
    share = Path(ament.get_package_share_directory("uda_seg_ros"))
    assert share == install / "share" / "uda_seg_ros"
    assert (share / "config" / "segment.yaml").is_file()  # the launch file's default


def test_installed_executable_runs_the_installed_node(install):
    site = next((install / "lib").glob("python3*/site-packages"))
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0")
    probe = ("import uda_seg_ros.segmentation_node as m, sys; "
             "sys.exit(m.__file__.startswith(sys.argv[1]) is False)")
    assert subprocess.run([sys.executable, "-c", probe, str(site)], env=env,
                          check=False).returncode == 0
    # No model_path: the installed executable starts, checks its parameters, and exits 1
    # saying what to pass (without importing torch).
    result = subprocess.run([str(install / "lib" / "uda_seg_ros" / "segmentation_node")],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "parameter model_path is empty" in result.stdout + result.stderr
