"""Several cameras on one model: total throughput and per-camera latency, 1 vs 2 vs 4.

    .venv/bin/python benchmarks/multi_camera.py                        # 480x360, R18, CPU
    .venv/bin/python benchmarks/multi_camera.py --checkpoint runs/x/best.pt --seconds 20
    .venv/bin/python benchmarks/multi_camera.py --device cuda --rate 30

One segmentation_node subprocess serves `image_topics: [/cam0/image_raw, ...]` (as many
topics as the largest count asked for). For each camera count N in turn, this process
publishes 480x360 rgb8 frames on the first N topics, each at --rate frames per second
(0: as fast as it can), stamped when sent, for --seconds; the node takes the newest frame
of every camera that has one and runs them as one batch. Measured here, on the masks that
come back (a warm-up second excluded):
  total fps       masks received per second, all cameras together;
  camera fps      the same per camera (mean over cameras);
  latency         stamp -> mask received, per camera, p50 / p90 (ms), DDS both ways included;
  vs 1 camera     total fps and p50 latency as ratios to the one-camera phase of this run.
Frames a camera sends while the node is busy replace each other (counted as dropped by the
node), so at a rate above what the model sustains the latency stays bounded and the
total fps shows what batching buys.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from uda_seg_tools.ros_domain import child_environment, claim_domain_id, configure_this_process


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model file (default: a random-init BiSeNet-resnet18)")
    parser.add_argument("--cameras", default="1,2,4", help="camera counts to measure, in order")
    parser.add_argument("--seconds", type=float, default=10.0, help="per camera count")
    parser.add_argument("--rate", type=float, default=30.0, help="fps per camera (0 = flood)")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--net-height", type=int, default=360, help="network input height")
    parser.add_argument("--net-width", type=int, default=480, help="network input width")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the node (0 = torch's default)")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
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


def camera_frames(cameras: int, height: int, width: int) -> list[np.ndarray]:
    """One camera-like frame per camera (smooth gradients with noise, each different)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(cameras):
        base = np.stack([xx / width, yy / height, (xx + yy + 40 * i) / (width + height)], -1)
        noisy = base * 200 + rng.normal(0, 20, (height, width, 3))
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def start_node(args, checkpoint: Path, topics: list[str], env: dict, log_path: Path):
    params = {"model_path": checkpoint, "device": args.device, "input_width": args.net_width,
              "input_height": args.net_height, "warmup_iters": 3, "stats_period": 1.0,
              "image_topics": "[" + ",".join(topics) + "]"}
    argv = [sys.executable, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
            *[arg for key, value in params.items() for arg in ("-p", f"{key}:={value}")]]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


class Phase:
    """Publish on `n` cameras for a while; keep each mask's latency, per camera."""

    def __init__(self, client, pubs, masks_seen: dict, frames, rate: float):
        self.client, self.pubs, self.frames, self.rate = client, pubs, frames, rate
        self.seen = masks_seen  # camera -> list of (arrival, latency) filled by the callbacks
        self.sent = 0

    def run(self, seconds: float) -> None:
        from uda_seg_ros.conversions import numpy_to_image

        msgs = [numpy_to_image(rgb, "rgb8") for rgb in self.frames]
        for camera, msg in enumerate(msgs):
            msg.header.frame_id = f"cam{camera}"
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        end = time.perf_counter() + seconds
        next_send = time.perf_counter()
        while time.perf_counter() < end:
            for pub, msg in zip(self.pubs, msgs):
                msg.header.stamp = self.client.get_clock().now().to_msg()
                pub.publish(msg)
                self.sent += 1
            next_send += period
            time.sleep(max(0.0, next_send - time.perf_counter()) if period else 0.001)


def summarise(seen: dict, cameras: int, start: float, end: float) -> dict:
    per_camera = []
    for camera in range(cameras):
        samples = [lat for arrival, lat in seen[camera] if start <= arrival <= end]
        per_camera.append(samples)
    duration = end - start
    counts = [len(s) for s in per_camera]
    latencies = [lat for samples in per_camera for lat in samples]
    if not latencies:
        return {"total_fps": 0.0, "camera_fps": 0.0, "p50": float("nan"), "p90": float("nan"),
                "counts": counts}
    ms = np.asarray(latencies) * 1e3
    return {"total_fps": sum(counts) / duration, "camera_fps": float(np.mean(counts)) / duration,
            "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "counts": counts}


def main() -> int:
    args = parse_args()
    counts = [int(c) for c in args.cameras.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="multi_camera_"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(tmp)
    domain = claim_domain_id(from_environment=True)
    env = child_environment(domain)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    configure_this_process(domain)

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    cameras = max(counts)
    topics = [f"/cam{i}/image_raw" for i in range(cameras)]
    log_path = tmp / "node.log"
    node = start_node(args, checkpoint, topics, env, log_path)
    rclpy.init()
    client = rclpy.create_node("multi_camera_bench")
    seen: dict[int, list[tuple[float, float]]] = {i: [] for i in range(cameras)}
    lock = threading.Lock()

    def on_mask(camera: int, msg: Image) -> None:
        now = client.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            seen[camera].append((time.perf_counter(), (now - stamp) * 1e-9))

    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pubs = [client.create_publisher(Image, topic, qos_profile_sensor_data) for topic in topics]
    for i in range(cameras):
        client.create_subscription(Image, f"/cam{i}/segmentation/class_mask",
                                   lambda msg, i=i: on_mask(i, msg), reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(client)

    def spin() -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    rows = []
    try:
        deadline = time.monotonic() + args.startup_timeout
        while "ready:" not in log_path.read_text(errors="replace"):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        while not all(pub.get_subscription_count() for pub in pubs):
            time.sleep(0.1)
        frames = camera_frames(cameras, args.height, args.width)
        for n in counts:
            phase = Phase(client, pubs[:n], seen, frames[:n], args.rate)
            started = time.perf_counter()
            phase.run(args.seconds)
            time.sleep(1.0)  # the last masks come back
            with lock:
                result = summarise(seen, n, started + 1.0, started + args.seconds)
                for samples in seen.values():
                    samples.clear()
            result.update(cameras=n, sent_fps=phase.sent / args.seconds)
            rows.append(result)
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(60)
        executor.shutdown(timeout_sec=2.0)
        client.destroy_node()
        rclpy.try_shutdown()
        spinner.join(5.0)

    one = next((r for r in rows if r["cameras"] == 1), rows[0])
    print(f"multi-camera: {args.width}x{args.height} rgb8 frames, network "
          f"{args.net_width}x{args.net_height}, {args.device}, node threads {args.threads}, "
          f"{args.rate:g} fps per camera offered, {args.seconds:g} s per count")
    print("| cameras | offered fps | total fps | camera fps | latency p50 ms | p90 ms | "
          "total fps vs 1 | p50 vs 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cameras']} | {r['sent_fps']:.1f} | {r['total_fps']:.2f} | "
              f"{r['camera_fps']:.2f} | {r['p50']:.1f} | {r['p90']:.1f} | "
              f"{r['total_fps'] / max(one['total_fps'], 1e-9):.2f} | "
              f"{r['p50'] / one['p50']:.2f} |")
    print(f"node log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
