"""The node under hostile conditions (issue 14): signals at awkward moments, start-up
settings it must refuse in one line, a publish racing the shutdown, large frames.

Processes: the bad-start cases run in parallel and fail before any model loads (except
the two broken .pt files); the signal tests start their own nodes (several at once);
the large-frame test has one node for the module. The shutdown race runs a node in this
process on a private context (real rclpy, no second process needed).

    .venv/bin/pytest test/ros/test_node_robustness.py -q
"""
from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from helpers.ros import NodeProcess, RosClient, wait_for
from uda_seg_ros.conversions import numpy_to_image, rgb_to_compressed
from uda_seg_tools.ros_domain import claim_domain_id, configure_this_process

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
NET = ("input_width:=64", "input_height:=48")


def node_argv(*ros_args: str, module: str = "uda_seg_ros.segmentation_node") -> list[str]:
    """`name:=value` become -p parameters, `__ns:=` / `__node:=` remaps; others stay."""
    args = ["--ros-args"]
    for arg in ros_args:
        if arg.startswith("__"):
            args += ["-r", arg]
        elif ":=" in arg:
            args += ["-p", arg]
        else:
            args.append(arg)
    return NodeProcess.python_module(module, *args)


def problem_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\[(ERROR|FATAL)\]", line)]


# ----------------------------------------------------------------------------- bad starts

def test_bad_settings_exit_1_with_one_line_naming_the_problem(tmp_path, tiny_checkpoint):
    """Issue 14 #4, #5, #9, #10. Mutants: stats_file a directory or unwritable accepted
    at start (the old node failed at shutdown with a traceback and lost the statistics);
    an empty .pt ending in 'IndexError: list index out of range'; a malformed params YAML
    ending in a traceback from rclpy.init; stats_period:=0.0001 accepted (2,100
    /diagnostics messages a second from an idle node); two cameras whose outputs would
    share one segmentation/ namespace; a network size with one side given (the other 0,
    'the model's own') served at a made-up size."""
    a_file = tmp_path / "plain_file"
    a_file.write_text("x")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 4)
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("/**:\n  ros__parameters:\n    input_width: [64\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text("input_width: 64\n")
    model = f"model_path:={tiny_checkpoint}"
    cases = {
        "stats_file=.* is a directory": (model, f"stats_file:={tmp_path}"),
        "stats_file=/proc/.* cannot write": (model, "stats_file:=/proc/uda_seg/stats.json"),
        "stats_file=.*plain_file/stats.json: cannot write": (
            model, f"stats_file:={a_file}/stats.json"),
        r"stats_period=0.0001: must be 0 .* or at least 0.1": (model, "stats_period:=0.0001"),
        "malformed.yaml: not valid YAML at line 4": (model, "--params-file", str(malformed)),
        "flat.yaml: expected '<node name or /\\*\\*>: ros__parameters": (
            model, "--params-file", str(flat)),
        "two inputs in one namespace would publish to the same segmentation/ topics": (
            model, "image_topics:=[/cam/image_raw,/cam/image_rect]"),
        "input_height=48, input_width=0: set both .* or neither": (model, "input_height:=48"),
        "empty.pt is empty \\(0 bytes\\)": (f"model_path:={empty}", *NET),
        "garbage.pt: not a PyTorch checkpoint": (f"model_path:={garbage}", *NET),
    }
    procs = {}
    for i, (pattern, args) in enumerate(cases.items()):
        procs[pattern] = NodeProcess.start(node_argv(f"__ns:=/bad{i}", *args),
                                           tmp_path / f"bad{i}.log")
    for pattern, proc in procs.items():
        assert proc.wait(120) == 1, proc.output()
        log = proc.output()
        assert "Traceback" not in log, log
        (line,) = problem_lines(log)  # one line says what is wrong
        assert "[FATAL]" in line and "cannot start" in line and re.search(pattern, line), log


def test_unknown_parameter_keys_are_named_with_the_nearest_valid_one(tmp_path):
    """Issue 14 #9. Mutant: unknown keys in a params file (a typo such as input_widht)
    ignored without a word. The node still reads its settings (here it then stops on the
    half-set network size the typo leaves, which keeps the test fast)."""
    params = tmp_path / "typos.yaml"
    params.write_text("/**:\n  ros__parameters:\n    input_widht: 64\n    stats_perod: 1.0\n"
                      "    zzz_unrelated: 3\n    input_height: 48\n")
    proc = NodeProcess.start(node_argv("__ns:=/typos", "--params-file", str(params),
                                       f"model_path:={tmp_path / 'missing.pt'}",
                                       "max_input_pixel:=100"),
                             tmp_path / "typos.log")
    assert proc.wait(120) == 1
    log = proc.output()
    expected = {"input_widht": "input_width", "stats_perod": "stats_period",
                "max_input_pixel": "max_input_pixels"}
    for typo, meant in expected.items():
        assert re.search(rf"\[WARN\].*unknown parameter '{typo}' ignored \(did you mean "
                         rf"'{meant}'\?\)", log), log
    assert re.search(r"unknown parameter 'zzz_unrelated' ignored;", log), log
    assert "unknown parameter 'input_height'" not in log
    # the typo leaves input_width at 0 beside input_height 48: refused, saying so
    assert "input_height=48, input_width=0: set both" in log


# ----------------------------------------------------------------------------- signals

def serve_one_frame(client: RosClient, ns: str, proc: NodeProcess) -> None:
    """Publish a frame to node `ns` until its mask comes back, then wait for the count."""
    proc.wait_for_output("ready:", timeout=180)
    pub = client.publisher(Image, f"/{ns}/image", qos_profile_sensor_data)
    masks = client.collect(Image, f"/{ns}/segmentation/class_mask", qos_profile_sensor_data)
    client.wait_for_subscriber(pub)
    msg = numpy_to_image(np.zeros((8, 10, 3), np.uint8), "rgb8")
    msg.header.frame_id = ns
    for _ in range(60):
        pub.publish(msg)
        try:
            masks.wait_for(lambda m: m.header.frame_id == ns, timeout=1.0)
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError(f"no mask from {ns}:\n{proc.output()[-2000:]}")


def test_a_second_signal_while_stopping_still_exits_0_with_summary_and_stats(
        tmp_path, tiny_checkpoint):
    """Issue 14 #1. Mutant: rclpy's SIGINT handler chaining to Python's default one, so
    a second SIGINT during the shutdown (a double Ctrl-C; a non-interactive `ros2 launch`
    forwarding SIGINT on top of the group's) raises KeyboardInterrupt in the middle of the
    summary: traceback, exit -2 or -6, no summary line, no stats file. Four nodes: two
    signals back to back (SIGINT+SIGINT, SIGTERM+SIGINT), a second SIGINT on the
    'stopping' line, and one after the summary line, while the interpreter winds down."""
    plans = {"twice": (signal.SIGINT, signal.SIGINT), "term_int": (signal.SIGTERM, signal.SIGINT),
             "stopping": (signal.SIGINT, signal.SIGINT), "late": (signal.SIGINT, signal.SIGINT)}
    waits = {"stopping": "]: stopping (SIGINT)", "late": "summary:"}  # the second signal's cue
    nodes = {name: NodeProcess.start(
        node_argv(f"__ns:=/{name}", f"model_path:={tiny_checkpoint}", *NET, "warmup_iters:=0",
                  f"stats_file:={tmp_path / name / 'stats.json'}"), tmp_path / f"{name}.log")
        for name in plans}
    client = RosClient()
    try:
        for name, proc in nodes.items():
            serve_one_frame(client, name, proc)
        for name, (first, second) in plans.items():
            nodes[name].send(first)
            if name not in waits:
                nodes[name].send(second)  # back to back, as ros2 launch forwards it
        for name, cue in waits.items():
            nodes[name].wait_for_output(cue, timeout=60)
            nodes[name].send(plans[name][1])
        for name, proc in nodes.items():
            assert proc.wait(60) == 0, f"{name}:\n{proc.output()[-3000:]}"
            log = proc.output()
            assert "summary: fps=" in log and "Traceback" not in log, f"{name}:\n{log}"
            assert "terminate called" not in log
            stats = json.loads((tmp_path / name / "stats.json").read_text())
            assert stats["counters"]["processed"] >= 1
    finally:
        for proc in nodes.values():
            if proc.alive():
                proc.stop(signal.SIGKILL)
        client.close()


def test_a_signal_while_the_model_loads_exits_0_cleanly(tmp_path, tiny_checkpoint):
    """Issue 14 #2. Mutants: SIGINT during the model load raising KeyboardInterrupt out of
    torch's import (traceback, exit -2); SIGTERM during the load letting it finish and
    then failing on the shut-down context ('[FATAL] cannot start: RCLError: Failed to
    create publisher: rcl node's context is invalid', exit 1). The signal is sent on the
    'loading' line, before torch is even imported; 'ready:' must never come."""
    nodes = {sig: NodeProcess.start(
        node_argv(f"__ns:=/load_{sig.name}", f"model_path:={tiny_checkpoint}", *NET),
        tmp_path / f"{sig.name}.log") for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig, proc in nodes.items():
            proc.wait_for_output("]: loading ", timeout=120)
            proc.send(sig)
        for sig, proc in nodes.items():
            assert proc.wait(60) == 0, proc.output()
            log = proc.output()
            assert f"stopped while starting ({sig.name})" in log, log
            assert "ready:" not in log and "Traceback" not in log and not problem_lines(log), log
    finally:
        for proc in nodes.values():
            if proc.alive():
                proc.stop(signal.SIGKILL)


# ----------------------------------------------------------------------------- shutdown race

def test_a_publish_racing_the_shutdown_is_neither_an_error_nor_a_failure(
        tmp_path, tiny_checkpoint, capfd):
    """Issue 14 #3 and #4's second half, in this process on a private context. Mutants:
    the pipeline not told that the context is gone, so a frame whose publish fails with
    'publisher's context is invalid' logs '[ERROR] segmentation failed' and counts as
    failed; a stats_file that cannot be written at shutdown losing the statistics (they
    go to the log as JSON instead)."""
    from uda_seg_ros.segmentation_node import SegmentationNode

    configure_this_process(claim_domain_id())
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=claim_domain_id())
    stats = tmp_path / "stats" / "stats.json"
    overrides = {"model_path": str(tiny_checkpoint), "input_width": 64, "input_height": 48,
                 "warmup_iters": 0, "stats_file": str(stats), "stats_period": 0.0}
    node = SegmentationNode(context=context, namespace="/race", parameter_overrides=[
        Parameter(key, value=value) for key, value in overrides.items()])
    try:
        pipeline = node.pipeline
        msg = numpy_to_image(np.zeros((8, 10, 3), np.uint8), "rgb8")
        pipeline.submit(0, msg)
        wait_for(lambda: pipeline.total.counter("processed") == 1, 30, message="a processed frame")
        context.try_shutdown()  # SIGINT, as rclpy's handler does it, while frames still come
        pipeline.submit(0, msg)
        wait_for(lambda: pipeline.total.counter("unfinished") == 1, 30,
                 message="the frame cut short by the shutdown")
        assert pipeline.total.counter("failed") == 0
        stats.parent.rmdir()
        stats.parent.write_text("a file where the stats folder was")  # unwritable now
        node.close()
    finally:
        node.destroy_node()
        context.try_shutdown()
    log = capfd.readouterr().err
    assert "segmentation failed" not in log, log
    assert "summary: fps=" in log
    (line,) = [line for line in log.splitlines() if "cannot write stats_file" in line]
    kept = json.loads(line.split("the statistics: ", 1)[1])
    assert kept["counters"]["processed"] == 1 and kept["counters"]["unfinished"] == 1


# ----------------------------------------------------------------------------- large frames

def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def large_frames_node(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("large")
    proc = NodeProcess.start(node_argv(
        "__ns:=/large", f"model_path:={tiny_checkpoint}", *NET, "warmup_iters:=1",
        "image_transport:=compressed", "input_qos:=reliable", "stats_period:=0.2",
        "max_input_pixels:=10000000"), tmp / "large.log")
    client = RosClient()
    try:
        proc.wait_for_output("ready:", timeout=180)
        yield client, proc
    finally:
        proc.stop(signal.SIGINT)
        client.close()


def sparse_png(side: int, frame_id: str) -> CompressedImage:
    """A side x side PNG of a few kB (mostly black): large when decoded, small on the wire."""
    rgb = np.zeros((side, side, 3), np.uint8)
    rgb[::9, ::7] = (200, 40, 90)
    msg = rgb_to_compressed(rgb, "png")
    msg.header.frame_id = frame_id
    return msg


def test_large_allowed_frames_leave_memory_flat_and_bigger_ones_are_refused(large_frames_node):
    """Issue 14 #8. Mutants: the output writers keeping 5 frames of history (a reliable
    depth-5 writer holds its 5 largest-ever payloads, so every large frame adds its 9 MB
    mask + 2 x 27 MB colour and overlay until 5 are held); a frame over max_input_pixels
    decoded anyway (the budget parameter not reaching the check). Budget 10 Mpx: 3000x3000
    (9 Mpx) is served, 3200x3200 (10.2 Mpx) refused on its header."""
    client, proc = large_frames_node
    pub = client.publisher(CompressedImage, "/large/image/compressed", RELIABLE)
    outputs = {name: client.collect(Image, f"/large/segmentation/{name}", RELIABLE)
               for name in ("class_mask", "color_mask", "overlay")}
    client.wait_for_subscriber(pub)

    def serve(msg: CompressedImage, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pub.publish(msg)
            try:
                for collector in outputs.values():
                    collector.wait_for(lambda m: m.header.frame_id == msg.header.frame_id,
                                       timeout=3.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        for collector in outputs.values():
            collector.clear()

    for i in range(2):
        serve(sparse_png(64, f"small_{i}"))
    baseline = rss_mib(proc.proc.pid)
    serve(sparse_png(3000, "large_0"))
    serve(sparse_png(64, "small_after_0"))
    after_one = rss_mib(proc.proc.pid)
    for i in range(1, 5):
        serve(sparse_png(3000, f"large_{i}"))
    serve(sparse_png(64, "small_after_4"))
    after_five = rss_mib(proc.proc.pid)
    # A DDS writer keeps the payload buffers of its history (and of a sample still being
    # acknowledged) at the largest size it has sent: one large frame's three outputs are
    # 9 + 27 + 27 MiB; at most two of them may stay, whatever the number of large frames.
    one_frame_out = (9 + 27 + 27) * 1.05
    sizes = (baseline, after_one, after_five)
    assert after_five - after_one < one_frame_out, sizes  # no growth frame after frame
    assert after_five - baseline < 2 * one_frame_out + 40, sizes

    refused = sparse_png(3200, "over_budget")
    before = proc.output().count("more than the input budget")
    pub.publish(refused)
    wait_for(lambda: proc.output().count("more than the input budget") > before, 30,
             message="the over-budget frame rejected")
    assert "declares 3200x3200 = 10240000 pixels, more than the input budget of 10000000 " \
           "pixels" in proc.output()
    assert "raise the node's max_input_pixels" in proc.output()
