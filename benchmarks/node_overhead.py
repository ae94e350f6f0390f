"""What the ROS 2 node adds to the bare Segmenter, on the same frames, in one run of blocks.

    .venv/bin/python benchmarks/node_overhead.py                          # random R18, 360x480
    .venv/bin/python benchmarks/node_overhead.py --checkpoint runs/deploy/model.onnx \\
        --frames 50 --blocks 3 --threads 2

Blocks alternate, bare first (bare, node, bare, node, ... `--blocks` of each), and only one
model session exists on the machine at any moment, so neither side's thread pool (ONNX
Runtime's intra-op pool, torch's OpenMP team) competes with the other's:
  bare: a child process of its own loads the model, warms up, and runs
        Segmenter.segment(rgb) on the frames (preprocess + inference + postprocess), then
        exits;
  node: a segmentation_node child process is started, the frames are published to it as
        sensor_msgs/Image from this process, each next frame waiting for the class mask
        of the previous one (no frame is ever dropped); then it is stopped (SIGINT).
This process holds no model (it publishes and listens). The node's latency is its own
'node' stage: image received by the subscription -> class mask published (decode, hand-over
to the worker, Segmenter, message, publish), from its stats_file. Also printed: the round
trip seen from here (adds DDS transport both ways), the Segmenter steps inside the node
against the same steps in the bare process, and the node's own plumbing (hand-over wait,
decode, publish). Target (issue 13): node / bare p50 <= 1.05.

Both children get OMP_NUM_THREADS=--threads (ONNX Runtime's intra-op count follows it, see
README "Threads and spinning"), OMP_WAIT_POLICY=--omp-wait-policy (PASSIVE) and the rest
of this environment unchanged: set UDA_SEG_ORT_SPIN=1 before running this to measure
spinning.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from uda_seg_core.reporting import load_average
from uda_seg_tools.ros_domain import child_environment, claim_domain_id, configure_this_process

SEGMENTER_STEPS = ("preprocess", "inference", "postprocess")
PLUMBING = ("wait", "decode", "publish")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="model file (default: a random-init BiSeNet-resnet18)")
    parser.add_argument("--frames", type=int, default=30, help="timed frames per block")
    parser.add_argument("--blocks", type=int, default=2, help="blocks of each kind")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2,
                        help="OMP_NUM_THREADS of both children (torch and ONNX Runtime)")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of both children ('' = as in this environment); "
                        "PASSIVE by default: libgomp's spinning default slowed torch on a main "
                        "thread 3-4x on the loaded machine (README, 'Threads and spinning')")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one mask")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def tiny_checkpoint(folder: Path) -> Path:
    """A random-init BiSeNet-R18 checkpoint, written by a child so this process loads no torch."""
    path = folder / "bisenet_r18_random.pt"
    code = ("import sys, torch; from uda_seg_core.checkpoint import save_checkpoint; "
            "from uda_seg_core.config import Config; "
            "from uda_seg_core.models import build_segmentation_model; torch.manual_seed(0); "
            "cfg = Config(); "
            "save_checkpoint(sys.argv[1], build_segmentation_model(cfg.model), cfg)")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    return path


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


# --------------------------------------------------------------------------- bare (child)

def bare_worker(args: argparse.Namespace) -> int:
    """One bare block: prints {'segment': [s, ...], 'preprocess': [...], ...} as JSON."""
    from uda_seg_core.inference import Segmenter

    seg = Segmenter.from_checkpoint(args.checkpoint, device=args.device,
                                    input_size=(args.height, args.width))
    seg.warmup(args.warmup)
    out: dict[str, list[float]] = {"segment": [], **{s: [] for s in SEGMENTER_STEPS}}
    for rgb in frames(args.frames, args.height, args.width):
        t0 = time.perf_counter()
        batch = seg.preprocess(rgb)
        t1 = time.perf_counter()
        ids = seg.infer(batch)[0]
        t2 = time.perf_counter()
        seg.postprocess(ids, rgb.shape[:2])
        t3 = time.perf_counter()
        for name, value in zip(("preprocess", "inference", "postprocess", "segment"),
                               (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            out[name].append(value)
    print("BARE " + json.dumps({**out, "backend": repr(seg.backend)}), flush=True)
    return 0


def run_bare_block(args: argparse.Namespace, env: dict) -> dict:
    argv = [sys.executable, __file__, "--bare-worker", "--checkpoint", str(args.checkpoint),
            "--frames", str(args.frames), "--height", str(args.height), "--width",
            str(args.width), "--warmup", str(args.warmup), "--device", args.device]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BARE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"bare block failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(line[5:])


# --------------------------------------------------------------------------- node (child)

class Client:
    """This process's side of the node blocks: a publisher, the mask subscription, a spin thread."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        rclpy.init()
        self.node = rclpy.create_node("node_overhead_bench")
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "image", qos)
        self.arrived: dict[str, float] = {}
        self.got_mask = threading.Event()
        self.node.create_subscription(Image, "segmentation/class_mask", self._on_mask, qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self._spin, daemon=True).start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def _on_mask(self, msg) -> None:
        self.arrived[msg.header.frame_id] = time.perf_counter()
        self.got_mask.set()

    def send_and_wait(self, msg, timeout: float, log_path: Path) -> float:
        self.got_mask.clear()
        start = time.perf_counter()
        self.pub.publish(msg)
        if not self.got_mask.wait(timeout) or msg.header.frame_id not in self.arrived:
            log = log_path.read_text()[-2000:] if log_path.exists() else ""
            raise TimeoutError(f"no mask for {msg.header.frame_id} within {timeout} s\n{log}")
        return self.arrived[msg.header.frame_id] - start

    def wait_for_node(self, proc: subprocess.Popen, log_path: Path, first) -> None:
        deadline = time.monotonic() + 180
        while not (self.pub.get_subscription_count()
                   and self.node.count_publishers("segmentation/class_mask")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"segmentation_node did not come up:\n{log_path.read_text()}")
            time.sleep(0.1)
        for attempt in range(30):  # discovery settles both ways; one untimed frame proves it
            try:
                self.send_and_wait(first, 2.0, log_path)
                return
            except TimeoutError:
                if attempt == 29:
                    raise

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        rclpy.try_shutdown()


def run_node_block(args: argparse.Namespace, env: dict, client: Client, images, folder: Path,
                   index: int) -> tuple[dict, list[float]]:
    from uda_seg_ros.conversions import numpy_to_image

    stats_file, log_path = folder / f"node_stats_{index}.json", folder / f"node_{index}.log"
    params = {"model_path": str(args.checkpoint), "device": args.device,
              "input_width": args.width, "input_height": args.height,
              "warmup_iters": args.warmup, "input_qos": "reliable",
              "stats_window": args.frames, "stats_file": str(stats_file)}  # timed frames only
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
             *[arg for key, value in params.items() for arg in ("-p", f"{key}:={value}")]],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    round_trip = []
    try:
        client.wait_for_node(proc, log_path, numpy_to_image(images[0], "rgb8"))
        for i, rgb in enumerate(images):
            msg = numpy_to_image(rgb, "rgb8")
            msg.header.frame_id = f"block{index}_frame_{i}"
            msg.header.stamp = client.node.get_clock().now().to_msg()
            round_trip.append(client.send_and_wait(msg, args.timeout, log_path))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    return json.loads(stats_file.read_text()), round_trip


# --------------------------------------------------------------------------- report

def report(args: argparse.Namespace, bare: list[dict], node: list[dict], round_trip: list[float],
           backend: str, load: tuple[str, str], env: dict) -> None:
    b = stats_ms([v for block in bare for v in block["segment"]])
    rt = stats_ms(round_trip)
    node_p50 = float(np.median([s["stages"]["node"]["p50"] for s in node]))
    node_mean = float(np.mean([s["stages"]["node"]["mean"] for s in node]))
    node_p90 = float(np.median([s["stages"]["node"]["p90"] for s in node]))
    outside = {k: float(np.mean([s["stages"][k]["mean"] for s in node])) for k in PLUMBING}
    steps_bare = {k: 1e3 * float(np.mean([v for block in bare for v in block[k]]))
                  for k in SEGMENTER_STEPS}
    print(f"node overhead at {args.height}x{args.width} on {args.device}, {args.blocks} blocks x "
          f"{args.frames} frames of each (bare and node never alive together), "
          f"OMP_NUM_THREADS={args.threads}, OMP_WAIT_POLICY="
          f"{env.get('OMP_WAIT_POLICY', '(unset)')}, UDA_SEG_ORT_SPIN="
          f"{env.get('UDA_SEG_ORT_SPIN', '(unset: off)')}; {backend}; load average "
          f"{load[0]} -> {load[1]}")
    print(f"{'':34s}{'p50 ms':>9s}{'p90 ms':>9s}{'mean ms':>9s}")
    print(f"{'bare Segmenter.segment':34s}{b['p50']:9.1f}{b['p90']:9.1f}{b['mean']:9.1f}")
    print(f"{'node: received -> published':34s}{node_p50:9.1f}{node_p90:9.1f}{node_mean:9.1f}")
    print(f"{'round trip: publish -> mask here':34s}{rt['p50']:9.1f}{rt['p90']:9.1f}"
          f"{rt['mean']:9.1f}")
    per_block = ", ".join(f"{s['stages']['node']['p50']:.1f}" for s in node)
    bare_blocks = ", ".join(f"{stats_ms(x['segment'])['p50']:.1f}" for x in bare)
    print(f"per block p50 ms: bare {bare_blocks}; node {per_block}")
    steps_node = {k: float(np.mean([s["stages"][k]["mean"] for s in node]))
                  for k in SEGMENTER_STEPS}
    steps = ", ".join(f"{k} {steps_node[k]:.2f} vs {steps_bare[k]:.2f}" for k in SEGMENTER_STEPS)
    inside = sum(steps_node.values())
    print(f"Segmenter steps, mean ms, inside the node vs bare: {steps}; total {inside:.1f} vs "
          f"{sum(steps_bare.values()):.1f} ({inside / sum(steps_bare.values()):.3f} x bare)")
    plumbing = sum(outside.values())
    print(f"node plumbing (mean ms): {plumbing:.2f} ("
          + ", ".join(f"{k} {v:.2f}" for k, v in outside.items()) + ")")
    ratio = node_p50 / b["p50"]
    print(f"node / bare: p50 {ratio:.3f}, mean {node_mean / b['mean']:.3f} "
          f"({'within' if ratio <= 1.05 else 'ABOVE'} the 1.05 target); round trip / bare p50 "
          f"{rt['p50'] / b['p50']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_worker:
        return bare_worker(args)
    tmp = Path(tempfile.mkdtemp(prefix="node_overhead_"))
    domain = claim_domain_id(from_environment=True)
    env = child_environment(domain, {"OMP_NUM_THREADS": str(args.threads)})
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    configure_this_process(domain)
    args.checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(tmp)
    load_start = load_average()
    images = frames(args.frames, args.height, args.width)
    client = Client()
    bare, node, round_trip = [], [], []
    try:
        for block in range(args.blocks):
            bare.append(run_bare_block(args, env))
            stats, rt = run_node_block(args, env, client, images, tmp, block)
            node.append(stats)
            round_trip += rt
    finally:
        client.close()
    print(f"node stats and logs: {tmp}")
    report(args, bare, node, round_trip, bare[0]["backend"],
           (load_start, load_average()), env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
