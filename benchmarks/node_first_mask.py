"""Time from starting the node's process to its first published mask (a vehicle's cold
start), for a model file, in any Python environment (a serving-only venv without torch).

    .venv/bin/python benchmarks/node_first_mask.py --model model.onnx
    .venv/bin/python benchmarks/node_first_mask.py --model model.onnx \\
        --node-python /opt/serve/bin/python --runs 5

This process publishes a 480x360 rgb8 frame every 50 ms on /first_mask/image from before
the node starts (best effort, as a camera does) and listens on
/first_mask/segmentation/class_mask. Each run starts `<node-python> -m
uda_seg_ros.segmentation_node` (device cpu, the model's own input size, the default 3
warm-up runs) and measures, from just before the process is spawned:
  ready   the node's 'ready:' log line (model loaded and warmed up, subscribed);
  mask    the first class_mask received here (the first frame after ready, segmented and
          published, DDS both ways included).
The node is stopped with SIGINT after each run. Nothing is cached between runs except by
the OS (file pages), so the first run includes cold-disk imports.
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

NS = "/first_mask"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model file the node serves")
    parser.add_argument("--node-python", default=sys.executable,
                        help="the interpreter that runs the node (e.g. a serving-only venv)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the node")
    parser.add_argument("--timeout", type=float, default=180.0)
    return parser.parse_args()


class Client:
    """Publishes frames every 50 ms; records when the first mask of a run arrives."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from uda_seg_ros.conversions import numpy_to_image

        rclpy.init()
        self.node = rclpy.create_node("first_mask_bench")
        rgb = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)
        self.msg = numpy_to_image(rgb, "rgb8")
        self.pub = self.node.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
        self.first_mask: float | None = None
        self.node.create_subscription(Image, f"{NS}/segmentation/class_mask", self._on_mask,
                                      QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_timer(0.05, self._send)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def _send(self) -> None:
        self.msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(self.msg)

    def _on_mask(self, msg) -> None:
        if self.first_mask is None:
            self.first_mask = time.perf_counter()


def one_run(args, client: Client, env: dict, log_path: Path) -> tuple[float, float]:
    client.first_mask = None
    argv = [args.node_python, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
            "-r", f"__ns:={NS}", "-p", f"model_path:={args.model}", "-p", "device:=cpu"]
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        node = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    ready = None
    try:
        deadline = start + args.timeout
        while client.first_mask is None:
            if ready is None and "ready:" in log_path.read_text(errors="replace"):
                ready = time.perf_counter()
            if node.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"no mask from the node:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.005)
        ready = ready or client.first_mask
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(60)
    return ready - start, client.first_mask - start


def main() -> int:
    args = parse_args()
    domain = claim_domain_id()
    configure_this_process(domain)
    env = child_environment(domain, {"OMP_NUM_THREADS": str(args.threads)})
    client = Client()
    results = []
    with tempfile.TemporaryDirectory(prefix="first_mask_") as tmp:
        for run in range(args.runs):
            ready, mask = one_run(args, client, env, Path(tmp) / f"node_{run}.log")
            results.append((ready, mask))
            print(f"run {run + 1}: ready {ready:.2f} s, first mask {mask:.2f} s", flush=True)
            time.sleep(1.0)
    client.executor.shutdown(timeout_sec=1.0)
    client.node.destroy_node()
    import rclpy

    rclpy.try_shutdown()
    client.thread.join(timeout=5.0)
    masks = [m for _, m in results]
    print(f"first mask: median {np.median(masks):.2f} s, min {min(masks):.2f} s, "
          f"max {max(masks):.2f} s over {len(masks)} runs ({args.node_python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
