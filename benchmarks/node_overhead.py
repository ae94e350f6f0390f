"""What the ROS 2 node adds to the bare Segmenter, measured in one run on the same frames.

    .venv/bin/python benchmarks/node_overhead.py                     # 360x480, CPU, 30 frames
    .venv/bin/python benchmarks/node_overhead.py --checkpoint runs/x/best.pt --frames 100

For each frame, alternately (so both see the same machine load):
  bare: Segmenter.segment(rgb) in this process (preprocess + inference + postprocess);
  node: the frame is published as sensor_msgs/Image to a segmentation_node subprocess,
        and the next frame waits for its class mask (no frame is ever dropped).
The node's latency is its own 'node' stage: image received by the subscription ->
class mask published (decode, hand-over to the worker, Segmenter, message, publish),
read from its stats_file at shutdown. The round trip seen from this process (publish ->
mask received, adding DDS transport both ways) is printed too, and so is the node's own
plumbing (hand-over wait + decode + publish, timed inside the node), which does not depend
on how fast each process happened to get the CPU. Target: node / bare <= 1.10.

Both processes use --threads torch threads (default 1): on a shared 2-core machine,
OpenMP threads spinning against other processes make 2-thread timings swing by up to 4x
from one process to the other, which would swamp the few milliseconds measured here.
Pass --threads 0 for torch's default. With --in-process the node runs in this process
(its own worker thread, the same executor as the client), which removes the remaining
difference between two processes' CPU shares.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model file (default: a random-init BiSeNet-resnet18)")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (0 = default)")
    parser.add_argument("--in-process", action="store_true",
                        help="run the node in this process (same allocator, same scheduling as "
                             "the bare Segmenter) instead of as a segmentation_node subprocess")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one mask")
    return parser.parse_args()


def tiny_checkpoint(folder: Path) -> Path:
    import torch

    from uda_seg_core.checkpoint import save_checkpoint
    from uda_seg_core.config import Config
    from uda_seg_core.models import build_segmentation_model

    torch.manual_seed(0)
    cfg = Config()
    return save_checkpoint(folder / "bisenet_r18_random.pt", build_segmentation_model(cfg.model),
                           cfg)


def frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth colour gradients with noise: camera-like, different every frame."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(n):
        base = np.stack([xx / width, yy / height, (xx + yy + 10 * i) / (width + height)], -1) * 200
        out.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return out


def stats_ms(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "mean": float(ms.mean()), "max": float(ms.max())}


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="node_overhead_"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(tmp)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 100)),
               RCUTILS_COLORIZED_OUTPUT="0")
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})

    import rclpy
    import torch
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from uda_seg_core.inference import Segmenter
    from uda_seg_ros.conversions import numpy_to_image

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    stats_file = tmp / "node_stats.json"
    log_path = tmp / "node.log"
    params = {"model_path": str(checkpoint), "device": args.device, "input_width": args.width,
              "input_height": args.height, "warmup_iters": args.warmup, "input_qos": "reliable",
              "stats_window": args.frames,
              "stats_file": str(stats_file)}  # window: timed frames only
    node_proc = None
    if not args.in_process:
        with open(log_path, "wb") as log:
            node_proc = subprocess.Popen(
                [sys.executable, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
                 *[arg for key, value in params.items() for arg in ("-p", f"{key}:={value}")]],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    seg = Segmenter.from_checkpoint(checkpoint, device=args.device,
                                    input_size=(args.height, args.width))
    seg.warmup(args.warmup)
    images = frames(args.frames, args.height, args.width)

    rclpy.init()
    client = rclpy.create_node("node_overhead_bench")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    pub = client.create_publisher(Image, "image", qos)
    arrived: dict[str, float] = {}
    got_mask = threading.Event()

    def on_mask(msg: Image) -> None:
        arrived[msg.header.frame_id] = time.perf_counter()
        got_mask.set()

    client.create_subscription(Image, "segmentation/class_mask", on_mask, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    seg_node = None
    if args.in_process:
        from rclpy.parameter import Parameter

        from uda_seg_ros.segmentation_node import SegmentationNode

        seg_node = SegmentationNode(
            parameter_overrides=[Parameter(key, value=value) for key, value in params.items()])
        executor.add_node(seg_node)

    def spin() -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    threading.Thread(target=spin, daemon=True).start()

    def send_and_wait(msg: Image, timeout: float) -> float:
        got_mask.clear()
        start = time.perf_counter()
        pub.publish(msg)
        if not got_mask.wait(timeout) or msg.header.frame_id not in arrived:
            log = log_path.read_text()[-2000:] if log_path.exists() else ""
            raise TimeoutError(f"no mask for {msg.header.frame_id} within {timeout} s\n{log}")
        return arrived[msg.header.frame_id] - start

    try:
        deadline = time.monotonic() + 120
        while not (pub.get_subscription_count()
                   and client.count_publishers("segmentation/class_mask")):
            if (node_proc and node_proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"segmentation_node did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        # Discovery settles both ways; one untimed frame proves the path is open.
        for attempt in range(30):
            try:
                send_and_wait(numpy_to_image(images[0], "rgb8"), 2.0)
                break
            except TimeoutError:
                if attempt == 29:
                    raise
        bare, round_trip = [], []
        for i, rgb in enumerate(images):
            start = time.perf_counter()
            seg.segment(rgb)
            bare.append(time.perf_counter() - start)
            msg = numpy_to_image(rgb, "rgb8")
            msg.header.frame_id = f"frame_{i}"
            msg.header.stamp = client.get_clock().now().to_msg()
            round_trip.append(send_and_wait(msg, args.timeout))
    finally:
        if node_proc is not None:
            node_proc.send_signal(signal.SIGINT)
            node_proc.wait(60)
        if seg_node is not None:
            seg_node.close()  # writes stats_file
        executor.shutdown()
        rclpy.try_shutdown()

    node_stats = json.loads(stats_file.read_text())
    print(f"node stats: {stats_file}")
    node_stage = node_stats["stages"]["node"]
    inside = ("preprocess", "inference", "postprocess")
    segmenter_stages = sum(node_stats["stages"][s]["mean"] for s in inside)
    b, rt = stats_ms(bare), stats_ms(round_trip)
    where = "in this process" if args.in_process else "as a subprocess"
    print(f"node ({where}) overhead at {args.height}x{args.width} on {seg.device}, {args.frames} "
          f"frames, {torch.get_num_threads()} torch threads, checkpoint {checkpoint.name}")
    print(f"{'':34s}{'p50 ms':>9s}{'p90 ms':>9s}{'mean ms':>9s}{'max ms':>9s}")
    print(f"{'bare Segmenter.segment':34s}{b['p50']:9.1f}{b['p90']:9.1f}{b['mean']:9.1f}"
          f"{b['max']:9.1f}")
    print(f"{'node: received -> published':34s}{node_stage['p50']:9.1f}{node_stage['p90']:9.1f}"
          f"{node_stage['mean']:9.1f}{node_stage['max']:9.1f}")
    print(f"{'round trip: publish -> mask here':34s}{rt['p50']:9.1f}{rt['p90']:9.1f}"
          f"{rt['mean']:9.1f}"
          f"{rt['max']:9.1f}")
    outside = ("wait", "decode", "publish")
    parts = ", ".join(f"{s} {node_stats['stages'][s]['mean']:.2f}" for s in outside)
    plumbing = sum(node_stats["stages"][s]["mean"] for s in outside)
    print(f"inside the node (mean ms): Segmenter steps {segmenter_stages:.1f} "
          f"({segmenter_stages / b['mean']:.3f} x bare); plumbing {plumbing:.2f} ({parts})")
    ratio50, ratio_mean = node_stage["p50"] / b["p50"], node_stage["mean"] / b["mean"]
    verdict = "within" if ratio50 <= 1.10 else "ABOVE"
    print(f"node / bare: p50 {ratio50:.3f}, mean {ratio_mean:.3f} ({verdict} the 1.10 target); "
          f"plumbing / bare mean {plumbing / b['mean']:.3f}; round trip / bare p50 "
          f"{rt['p50'] / b['p50']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
