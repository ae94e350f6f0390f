"""The segmentation node in its own process, driven by real rclpy from this one.

Two nodes start once for the module (in parallel, on a private ROS_DOMAIN_ID), serving
the session's trained tiny model (its classes follow colour, so a red/blue swap shows):
- /raw/uda_segmentation: raw `image`, SensorDataQoS, masks at the input size;
- /comp/uda_segmentation: `image` remapped to /cam/image_raw, compressed transport
  (so it listens on /cam/image_raw/compressed), reliable QoS, masks at the network size;
  it is given the transport by its deprecated name, input_transport.
The module fixture stops them; the SIGINT / SIGTERM test starts and stops its own two.

    .venv/bin/pytest test/ros/test_segmentation_node.py -q
"""
from __future__ import annotations

import json
import signal
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from helpers.ros import NodeProcess, RosClient, wait_for
from uda_seg_core.data import read_rgb
from uda_seg_core.labels import PALETTE
from uda_seg_ros.conversions import (
    ImageConversionError,
    check_image,
    image_to_numpy,
    numpy_to_image,
    rgb_to_compressed,
)
from uda_seg_ros.diagnostics import status_values
from uda_seg_ros.segmentation_node import LatestFrame

NET_H, NET_W = 48, 64
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def node_argv(ckpt, *args: str) -> list[str]:
    return NodeProcess.python_module(
        "uda_seg_ros.segmentation_node", "--ros-args", "-p", f"model_path:={ckpt}",
        "-p", f"input_width:={NET_W}", "-p", f"input_height:={NET_H}", "-p", "warmup_iters:=1",
        "-p", "stats_period:=0.1", *args)


class NodeUnderTest:
    def __init__(self, proc: NodeProcess, ns: str, stats_file):
        self.proc, self.ns, self.stats_file = proc, ns, stats_file


@pytest.fixture(scope="module")
def ros(tmp_path_factory, trained_model):
    tmp = tmp_path_factory.mktemp("node")
    ckpt = trained_model.checkpoint
    raw = NodeProcess.start(node_argv(ckpt, "-r", "__ns:=/raw",
                                      "-p", f"stats_file:={tmp / 'raw_stats.json'}"),
                            tmp / "raw.log")
    comp = NodeProcess.start(node_argv(ckpt, "-r", "__ns:=/comp", "-r", "image:=/cam/image_raw",
                                       "-p", "input_transport:=compressed",
                                       "-p", "input_qos:=reliable", "-p", "output_size:=network",
                                       "-p", f"stats_file:={tmp / 'comp_stats.json'}"),
                             tmp / "comp.log")
    client = RosClient()
    try:
        raw.wait_for_output("ready:")
        comp.wait_for_output("ready:")
        client.diagnostics = client.collect(DiagnosticArray, "/diagnostics", RELIABLE)
        client.raw = NodeUnderTest(raw, "/raw", tmp / "raw_stats.json")
        client.comp = NodeUnderTest(comp, "/comp", tmp / "comp_stats.json")
        yield client
    finally:
        for proc in (raw, comp):
            proc.send(signal.SIGINT)
        for proc in (raw, comp):
            if proc.proc.returncode is None:
                proc.wait()
        client.close()


def latest_values(client, ns: str, predicate=lambda v: True, timeout: float = 15.0) -> dict:
    """Key/values of the newest /diagnostics status of node `ns` that satisfies `predicate`."""
    def find():
        for array in reversed(client.diagnostics.snapshot()):
            for status in array.status:
                if status.name.startswith(f"{ns}/uda_segmentation"):
                    values = status_values(status)
                    values["_level"], values["_message"] = status.level, status.message
                    return values if predicate(values) else None
        return None
    return wait_for(find, timeout, message=f"/diagnostics from {ns} matching the test")


def settled_values(client, ns: str) -> dict:
    """Counts after everything sent so far is accounted for: the second report from `ns`
    after this call (the first may have been built while a frame was finishing)."""
    client.diagnostics.clear()

    def reports():
        return [a for a in client.diagnostics.snapshot()
                if any(s.name.startswith(f"{ns}/uda_segmentation") for s in a.status)]
    wait_for(lambda: len(reports()) >= 2, 15.0, message=f"two /diagnostics reports from {ns}")
    return latest_values(client, ns)


def stamped(msg, client, frame_id: str):
    msg.header.frame_id = frame_id
    msg.header.stamp = client.node.get_clock().now().to_msg()
    return msg


def request(pub, msg, collector, timeout: float = 20.0, resend: float = 1.0):
    """Publish `msg` (again every `resend` s: discovery may still be settling) until the
    message with its frame_id comes back on `collector`."""
    frame_id = msg.header.frame_id
    deadline = time.monotonic() + timeout
    while True:
        pub.publish(msg)
        try:
            return collector.wait_for(lambda m: m.header.frame_id == frame_id, timeout=resend,
                                      message=f"output for frame {frame_id}")
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture(scope="module")
def raw_io(ros):
    pub = ros.publisher(Image, "/raw/image", qos_profile_sensor_data)
    masks = ros.collect(Image, "/raw/segmentation/class_mask", qos_profile_sensor_data)
    ros.wait_for_subscriber(pub)
    return pub, masks


def rgb_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_latest_frame_slot_keeps_only_the_newest():
    slot = LatestFrame()
    assert slot.put("a") is False
    assert slot.put("b") is True  # 'a' was never taken: a drop
    assert slot.take() == "b"
    assert slot.take(timeout=0.01) is None
    slot.put("c")
    slot.close()
    assert slot.take() is None  # closed: the worker ends even with a frame pending


def scene_frame(trained_model, h: int = 50, w: int = 70) -> np.ndarray:
    """A frame of the kind the served model was trained on (its mask depends on colour),
    at a size that is not the network's, so the mask is resized back."""
    first = min((trained_model.camvid / "test").iterdir())
    return cv2.resize(read_rgb(first), (w, h), interpolation=cv2.INTER_NEAREST)


def garbage_padding(msg: Image, row_bytes: int) -> Image:
    """Fill the bytes between rows (step - row_bytes) with 0xAB: a reader that ignores
    `step` then reads them as pixels."""
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step).copy()
    data[:, row_bytes:] = 0xAB
    msg.data = data.tobytes()
    return msg


def encoded(rgb: np.ndarray, encoding: str) -> Image:
    """`rgb`'s pixels as `encoding`, with 6 bytes of garbage row padding; mono16 is
    big-endian with the grey level in its high byte and a different low byte, so a
    reader that ignores `is_bigendian` sees other grey levels."""
    grey = rgb[..., 0]
    image = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, rgb[..., :1]]),
             "bgra8": np.dstack([rgb[..., ::-1], rgb[..., :1]]), "mono8": grey,
             "mono16": grey.astype(np.uint16) * 256 + (255 - grey) // 2}[encoding]
    image = np.ascontiguousarray(image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    row_bytes = image.shape[1] * channels * image.itemsize
    msg = numpy_to_image(image, encoding, step=row_bytes + 6, is_bigendian=encoding == "mono16")
    return garbage_padding(msg, row_bytes)


@pytest.fixture(scope="module")
def rgb8_masks(ros, raw_io, trained_model):
    """The node's masks of the colour frame and of its grey version, sent as rgb8."""
    pub, masks = raw_io
    rgb = scene_frame(trained_model)
    grey = np.dstack([rgb[..., 0]] * 3)
    out = {}
    for name, pixels in (("colour", rgb), ("grey", grey)):
        msg = stamped(numpy_to_image(pixels, "rgb8"), ros, f"reference_{name}")
        out[name] = image_to_numpy(request(pub, msg, masks))[0].copy()
    assert len(np.unique(out["colour"])) > 1, "the served model should not be constant"
    return rgb, out


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_every_encoding_gives_the_mask_of_the_same_pixels_in_rgb8(ros, raw_io, rgb8_masks,
                                                                  encoding):
    """Mutants: a channel swap (bgr8 / bgra8 read as RGB), row padding ignored (rows read
    as if step were width x bytes per pixel), is_bigendian ignored for mono16. The mask
    must equal, pixel for pixel, the node's mask of the same pixels sent as rgb8 (mono:
    the grey level in all three channels), with the header and size unchanged."""
    pub, masks = raw_io
    rgb, reference = rgb8_masks
    msg = stamped(encoded(rgb, encoding), ros, f"cam_{encoding}")
    out = request(pub, msg, masks)
    assert out.header == msg.header  # stamp and frame_id unchanged
    mask, enc = image_to_numpy(out)
    assert enc == "mono8" and mask.shape == rgb.shape[:2]
    expected = reference["grey" if encoding.startswith("mono") else "colour"]
    differ = int((mask != expected).sum())
    assert differ == 0, f"{encoding}: {differ} of {mask.size} pixels differ from rgb8"


def test_a_red_blue_swap_changes_the_served_mask(ros, raw_io, rgb8_masks):
    """The check above has teeth: the same frame with red and blue exchanged (sent as
    rgb8) gives another mask, so an encoding read with swapped channels cannot pass."""
    pub, masks = raw_io
    rgb, reference = rgb8_masks
    swapped = np.ascontiguousarray(rgb[..., ::-1])
    out = request(pub, stamped(numpy_to_image(swapped, "rgb8"), ros, "swapped"), masks)
    assert (image_to_numpy(out)[0] != reference["colour"]).mean() > 0.05


def test_color_mask_and_overlay_only_while_subscribed(ros, raw_io):
    pub, masks = raw_io
    rgb = rgb_frame(40, 60, seed=1)
    request(pub, stamped(numpy_to_image(rgb, "rgb8"), ros, "nobody_0"), masks)
    done = latest_values(ros, "/raw", lambda v: int(v["frames_processed"]) >= 1)
    assert done.get("frames_color_published", "0") == "0"
    assert done.get("frames_overlay_published", "0") == "0"

    colors = ros.collect(Image, "/raw/segmentation/color_mask", qos_profile_sensor_data)
    overlays = ros.collect(Image, "/raw/segmentation/overlay", qos_profile_sensor_data)
    msg = stamped(numpy_to_image(rgb, "rgb8"), ros, "watched")
    color = request(pub, msg, colors)
    overlay = request(pub, msg, overlays)
    mask_msg = masks.wait_for(lambda m: m.header.frame_id == "watched")
    assert color.header == msg.header and overlay.header == msg.header
    mask, _ = image_to_numpy(mask_msg)
    color_img, enc = image_to_numpy(color)
    assert enc == "rgb8" and np.array_equal(color_img, PALETTE[mask])
    blend, enc = image_to_numpy(overlay)
    assert enc == "rgb8" and blend.shape == rgb.shape
    expected = 0.5 * rgb.astype(float) + 0.5 * PALETTE[mask].astype(float)
    assert np.abs(blend.astype(float) - expected).max() <= 1.0

    ros.unsubscribe(colors)
    ros.unsubscribe(overlays)
    time.sleep(1.0)  # let the node see both subscriptions go
    before = settled_values(ros, "/raw")
    for i in range(3):
        request(pub, stamped(numpy_to_image(rgb, "rgb8"), ros, f"nobody_{i + 1}"), masks)
    processed = int(before["frames_processed"]) + 3
    after = latest_values(ros, "/raw", lambda v: int(v["frames_processed"]) >= processed)
    assert after["frames_color_published"] == before["frames_color_published"]
    assert after["frames_overlay_published"] == before["frames_overlay_published"]


def raw_malformed() -> dict[str, Image]:
    good = numpy_to_image(rgb_frame(8, 10), "rgb8")

    def bad(**fields):
        msg = Image(height=good.height, width=good.width, encoding=good.encoding,
                    step=good.step, is_bigendian=0)
        msg.data = bytes(good.data)
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    return {
        "unknown encoding": bad(encoding="nv12"),
        "empty encoding": bad(encoding=""),
        "float encoding": bad(encoding="32FC1", step=40),
        "step too small": bad(step=good.step - 1),
        "truncated data": bad(data=bytes(good.data)[: len(good.data) // 2]),
        "no data": bad(data=b""),
        "zero size": bad(height=0, width=0, step=0, data=b""),
        "zero width": bad(width=0),
        "odd mono16 step": bad(encoding="mono16", step=21, data=bytes(8 * 21)),
        "height*step overflows uint32": bad(height=2**32 - 1, step=2**32 - 1, width=1,
                                            data=bytes(64)),
        "huge width": bad(width=2**32 - 1, height=1, step=3, data=bytes(3)),
    }


def reject_one_by_one(ros, node, pub, bad: dict, resend: float = 1.5, tries: int = 10) -> None:
    """Publish each bad message until /diagnostics shows it arrived; it must be rejected,
    never processed. (Best effort may lose a message on a loaded machine: then resend.)"""
    def handled(values, counts):  # arrived, and was rejected or processed
        def grew(key):
            return int(values[key]) > int(counts[key])
        return grew("frames_received") and (grew("frames_rejected") or grew("frames_processed"))

    counts = settled_values(ros, node.ns)
    for kind, msg in bad.items():
        for _ in range(tries):
            pub.publish(msg)
            try:
                now = latest_values(ros, node.ns, lambda v, c=counts: handled(v, c), timeout=resend)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError(f"{kind}: never arrived, or arrived and was neither rejected nor "
                                 f"processed:\n{node.proc.output()[-2000:]}")
        assert now["frames_processed"] == counts["frames_processed"], f"{kind} was processed"
        assert int(now["frames_rejected"]) == int(counts["frames_rejected"]) + 1, kind
        assert node.proc.alive(), f"the node died on {kind}:\n{node.proc.output()[-2000:]}"
        counts = now


def test_malformed_raw_input_is_rejected_and_node_survives(ros, raw_io):
    pub, masks = raw_io
    request(pub, stamped(numpy_to_image(rgb_frame(8, 10), "rgb8"), ros, "before_bad"), masks)
    reject_one_by_one(ros, ros.raw, pub, raw_malformed())
    out = request(pub, stamped(numpy_to_image(rgb_frame(8, 10), "rgb8"), ros, "after_bad"), masks)
    assert image_to_numpy(out)[0].shape == (8, 10)
    log = ros.raw.proc.output()
    assert "rejected input frame" in log and "supported: rgb8" in log


def random_bad_images(n: int, seed: int = 0) -> list[Image]:
    """`n` Images with random header fields, every one invalid for `check_image`."""
    rng = np.random.default_rng(seed)
    encodings = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "", "bayer_rggb8",
                 "RGB8", "mono16 "]
    sizes = [0, 1, 2, 3, 7, 255, 65536, 2**31 - 1, 2**31, 2**32 - 1]
    out = []
    while len(out) < n:
        msg = Image(encoding=str(rng.choice(encodings)), height=int(rng.choice(sizes)),
                    width=int(rng.choice(sizes)), step=int(rng.choice(sizes)),
                    is_bigendian=int(rng.integers(0, 2)))
        msg.data = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        try:
            check_image(msg)
        except ImageConversionError:
            out.append(msg)
    return out


def test_random_malformed_headers_never_stop_the_node(ros, raw_io):
    pub, masks = raw_io
    before = settled_values(ros, "/raw")
    bad = random_bad_images(150)
    for msg in bad:
        pub.publish(msg)
        time.sleep(0.005)
    out = request(pub, stamped(numpy_to_image(rgb_frame(8, 10), "rgb8"), ros, "after_random"),
                  masks)
    assert image_to_numpy(out)[0].shape == (8, 10)
    processed = int(before["frames_processed"]) + 1
    after = latest_values(ros, "/raw", lambda v: int(v["frames_processed"]) >= processed)
    received = int(after["frames_received"]) - int(before["frames_received"])
    rejected = int(after["frames_rejected"]) - int(before["frames_rejected"])
    good = received - rejected  # the good frame, perhaps resent by request()
    # Best effort, depth 1: on a loaded machine some frames are lost in transport, but
    # every bad one that arrived was rejected.
    assert received >= 0.5 * len(bad)
    assert 1 <= good <= 3


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def test_compressed_input_and_corrupt_bytes(ros):
    pub = ros.publisher(CompressedImage, "/cam/image_raw/compressed", RELIABLE)
    masks = ros.collect(Image, "/comp/segmentation/class_mask", RELIABLE)
    ros.wait_for_subscriber(pub)
    rgb = rgb_frame(60, 80, seed=2)
    for kind in ("jpeg", "png"):
        msg = stamped(rgb_to_compressed(rgb, kind), ros, f"compressed_{kind}")
        out = request(pub, msg, masks)
        mask, enc = image_to_numpy(out)
        assert out.header == msg.header
        assert enc == "mono8" and mask.shape == (NET_H, NET_W)  # output_size: network

    good_png = bytes(rgb_to_compressed(rgb, "png").data)
    huge_png = (good_png[:8] + png_chunk(b"IHDR",
                                         struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                + png_chunk(b"IDAT", zlib.compress(bytes(1000))) + png_chunk(b"IEND", b""))
    corrupt = {
        "garbage": bytes(range(256)) * 4,
        "empty": b"",
        "png signature, garbage body": good_png[:8] + bytes(200),
        "jpeg signature, garbage body": b"\xff\xd8\xff" + bytes(200),
        "png truncated mid-IDAT": good_png[: len(good_png) // 2],
        "png declaring 60000x60000": huge_png,
    }
    messages = {}
    for name, data in corrupt.items():
        messages[name] = CompressedImage(format="png")
        messages[name].header.frame_id = name
        messages[name].data = data
    reject_one_by_one(ros, ros.comp, pub, messages)
    warned = latest_values(ros, "/comp", lambda v: v["_level"] == DiagnosticStatus.WARN)
    assert "rejected" in warned["_message"]
    msg = stamped(rgb_to_compressed(rgb, "jpeg"), ros, "after_corrupt")
    request(pub, msg, masks)


def test_flood_keeps_latency_bounded_and_counts_drops(ros, raw_io):
    pub, masks = raw_io
    before = settled_values(ros, "/raw")
    masks.clear()
    msg = numpy_to_image(rgb_frame(120, 160, seed=3), "rgb8")
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < 3.0:
        stamped(msg, ros, f"flood_{sent}")
        pub.publish(msg)
        sent += 1
    send_rate = sent / (time.monotonic() - start)
    outputs = [(m, t) for m, t in masks.timed() if m.header.frame_id.startswith("flood_")]
    ages = [t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) for m, t in outputs]
    assert ros.raw.proc.alive()
    assert len(outputs) >= 5, f"only {len(outputs)} masks for {sent} frames"
    assert send_rate > 5 * len(outputs) / 3.0, "the flood was not far above the inference rate"
    # A growing queue would make the last masks ~2.5 s old; the newest-frame slot keeps
    # every mask within a couple of inference times of its frame.
    assert max(ages) < 1.0, f"masks up to {max(ages):.2f} s old"
    received = int(before["frames_received"])
    after = settled_values(ros, "/raw")  # the last frame in the slot has finished
    dropped = int(after["frames_dropped"]) - int(before["frames_dropped"])
    processed = int(after["frames_processed"]) - int(before["frames_processed"])
    got = int(after["frames_received"]) - received
    assert dropped > 0 and processed < got
    assert abs(got - processed - dropped) <= 1  # every received frame is processed or dropped
    assert float(after["node_max_ms"]) < 1000.0


def test_the_old_transport_parameter_name_works_with_a_warning(ros):
    """input_transport (the name before image_transport) still selects the transport (the
    /comp node listens on .../compressed: test_compressed_input_and_corrupt_bytes), with a
    warning naming the new name, and is not reported as an unknown parameter."""
    log = ros.comp.proc.output()
    assert "parameter 'input_transport' is deprecated: use 'image_transport'" in log
    assert "unknown parameter 'input_transport'" not in log
    assert "/cam/image_raw/compressed (compressed," in log


def test_sigusr1_prints_every_threads_stack_and_the_node_serves_on(ros, raw_io):
    """Guards the diagnosis of a hung node (the test helpers send SIGUSR1 before they kill
    one): without the handler SIGUSR1's default action ends the process; with a handler
    that dumps one thread only, the worker that runs the network is not in the log."""
    pub, masks = raw_io
    before = ros.raw.proc.output().count("most recent call first")
    ros.raw.proc.dump_stacks(settle_s=0.0)
    wait_for(lambda: ros.raw.proc.output().count("most recent call first") >= before + 2,
             20.0, message="two or more thread stacks in the node's log after SIGUSR1")
    assert ros.raw.proc.alive()
    out = request(pub, stamped(numpy_to_image(rgb_frame(40, 60, seed=3), "rgb8"), ros,
                               "after_stacks"), masks)
    assert out.header.frame_id == "after_stacks"


def test_bad_start_exits_1_naming_the_problem(tmp_path, ros):
    missing = tmp_path / "missing.pt"
    procs = {
        "model file not found": NodeProcess.start(node_argv(missing, "-r", "__ns:=/bad1"),
                                                  tmp_path / "bad1.log"),
        "image_transport='udp'": NodeProcess.start(
            node_argv(missing, "-r", "__ns:=/bad2", "-p", "image_transport:=udp"),
            tmp_path / "bad2.log"),
        "input_transport='udp' (the deprecated name of image_transport)": NodeProcess.start(
            node_argv(missing, "-r", "__ns:=/bad3", "-p", "input_transport:=udp"),
            tmp_path / "bad3.log"),
        "model_path is empty: pass -p model_path:=": NodeProcess.start(
            NodeProcess.python_module("uda_seg_ros.segmentation_node", "--ros-args",
                                      "-r", "__ns:=/bad4"), tmp_path / "bad4.log"),
        "parameters image_transport='compressed' and input_transport='raw'": NodeProcess.start(
            node_argv(missing, "-r", "__ns:=/bad5", "-p", "image_transport:=compressed",
                      "-p", "input_transport:=raw"), tmp_path / "bad5.log"),
    }
    for text, proc in procs.items():
        assert proc.wait(60) == 1
        assert "cannot start" in proc.output() and text in proc.output(), proc.output()


def test_sigint_and_sigterm_exit_0_with_summary(ros, tiny_checkpoint, tmp_path):
    """Two nodes of its own (the module's keep serving the other tests, in any order):
    each processes a frame, then one gets SIGINT and the other SIGTERM."""
    nodes = {}
    for name, sig in (("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM)):
        stats = tmp_path / f"{name}_stats.json"
        proc = NodeProcess.start(node_argv(tiny_checkpoint, "-r", f"__ns:=/{name}",
                                           "-p", f"stats_file:={stats}"), tmp_path / f"{name}.log")
        nodes[name] = (proc, sig, stats)
    try:
        for name, (proc, _, _) in nodes.items():
            proc.wait_for_output("ready:", timeout=120)
            pub = ros.publisher(Image, f"/{name}/image", qos_profile_sensor_data)
            masks = ros.collect(Image, f"/{name}/segmentation/class_mask", qos_profile_sensor_data)
            ros.wait_for_subscriber(pub)
            request(pub, stamped(numpy_to_image(rgb_frame(8, 10), "rgb8"), ros, name), masks)
            # The mask is published before the frame is counted: wait for the count.
            latest_values(ros, f"/{name}", lambda v: int(v["frames_processed"]) >= 1)
        for proc, sig, _ in nodes.values():  # both at once: teardown with torch takes seconds
            assert proc.alive()
            proc.send(sig)
        for proc, sig, stats in nodes.values():
            assert proc.wait(what=f"exit on {sig.name}") == 0, proc.output()[-2000:]
            log = proc.output()
            assert "summary: fps=" in log and "Traceback" not in log
            summary = json.loads(stats.read_text())
            assert summary["counters"]["processed"] >= 1
            assert summary["stages"]["inference"]["count"] >= 1
    finally:
        for proc, _, _ in nodes.values():
            if proc.alive():
                proc.stop(signal.SIGKILL)
