"""The child processes of `make demo` (and of benchmarks/node_realtime.py): one command that
must succeed (`run_step`), and one live run (`live_run`): the segmentation node on a model,
the live evaluator, and the bag played into the node, paced on the node's masks or at the
bag's recorded rate; the evaluator's result comes back with the node's statistics.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from rosbags.rosbag2 import Reader

from uda_seg_core.stages import StageError
from uda_seg_tools.bag import IMAGE_TOPIC, typestore
from uda_seg_tools.live_eval import merge_node_stats

MASK_TOPIC = "segmentation/class_mask"

# A stage that failed; the message names it and where its log is.
DemoError = StageError


def run_step(argv: list[str], what: str, log: Path | None = None, env=None) -> None:
    """Run one command; its output streams through (or into `log`); failure stops the demo."""
    print("    $ " + " ".join(argv[2:] if argv[:2] == [sys.executable, "-m"] else argv), flush=True)
    if log is None:
        rc = subprocess.call(argv, env=env)
    else:
        with open(log, "wb") as fh:
            rc = subprocess.call(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = ""
        if log is not None and log.is_file():
            tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise DemoError(f"{what} failed (exit {rc}){' - log: ' + str(log) if log else ''}{tail}")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "uda_seg_core.cli", *args]


def bag_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "uda_seg_tools.bag_cli", *args]


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise DemoError(f"the node exited ({proc.returncode}) before it was ready - log: "
                            f"{path}\n"
                            + path.read_text(errors="replace")[-2000:])
        time.sleep(0.2)
    raise DemoError(f"the node was not ready after {timeout:g} s - log: {path}")


def bag_frame_size(bag: Path) -> tuple[int, int]:
    """(H, W) of the bag's images: the node runs at exactly this size, so nothing is resampled
    (make-synthetic writes CamVid-style frames at 4:3, which need not be --size)."""
    store = typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == IMAGE_TOPIC]
        for conn, _, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            return int(msg.height), int(msg.width)
    raise DemoError(f"{bag} holds no {IMAGE_TOPIC} message")


MODEL_OWN_SIZE = (0, 0)  # live_run's size for "the node's default: the model's own"


def live_run(name: str, model: Path, bag: Path, frames: int, out: Path, env: dict,
             paced: bool, size: tuple[int, int] | None = None) -> dict:
    """Node + evaluator + player; returns the evaluator's result with the node's stats. The
    node runs at `size` (H, W; default: the bag's frame size, so nothing is resampled;
    MODEL_OWN_SIZE: the size the model file records, as the node does with no flags)."""
    h, w = size or bag_frame_size(bag)
    live = out / "live"
    live.mkdir(parents=True, exist_ok=True)
    stats, result_path = live / f"{name}_node_stats.json", live / f"{name}.json"
    for path in (stats, result_path):
        path.unlink(missing_ok=True)
    node_log = live / f"{name}_node.log"
    node_argv = [sys.executable, "-m", "uda_seg_ros.segmentation_node", "--ros-args",
                 "-p", f"model_path:={model}", "-p", "device:=cpu",
                 "-p", f"input_width:={w}", "-p", f"input_height:={h}",
                 "-p", f"input_qos:={'reliable' if paced else 'sensor_data'}",
                 "-p", f"stats_file:={stats}", "-p", "stats_window:=100000",
                 "-r", f"image:={IMAGE_TOPIC}"]
    with open(node_log, "wb") as fh:
        node = subprocess.Popen(node_argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
    eval_log = live / f"{name}_evaluate.log"
    evaluator = None
    try:
        wait_for_text(node_log, "ready", node, timeout=120)
        shown = f"{w}x{h}" if (h, w) != MODEL_OWN_SIZE else "its own size"
        print(f"    node ready ({model.name}, {shown}); evaluator and player starting", flush=True)
        eval_argv = bag_cli("evaluate", "--expect", str(frames), "--timeout", "300",
                            "--idle", "5", "--out", str(result_path))
        with open(eval_log, "wb") as fh:
            evaluator = subprocess.Popen(eval_argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        play_argv = bag_cli("play", str(bag), "--wait-subscribers", "60")
        if paced:
            play_argv += ["--pace-on", MASK_TOPIC]
        run_step(play_argv, f"uda-seg-bag play ({name})", log=live / f"{name}_play.log", env=env)
        print("    " + (live / f"{name}_play.log").read_text().strip().splitlines()[-1], flush=True)
        try:
            evaluator.wait(timeout=330)
        except subprocess.TimeoutExpired:
            evaluator.kill()
            raise DemoError(f"the evaluator did not finish - log: {eval_log}") from None
    finally:
        if evaluator is not None and evaluator.poll() is None:
            evaluator.send_signal(signal.SIGINT)
            evaluator.wait(timeout=20)
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
    if not result_path.is_file():
        raise DemoError(f"live evaluation ({name}) wrote no result - log: {eval_log}\n"
                        + eval_log.read_text(errors="replace")[-2000:])
    result = merge_node_stats(json.loads(result_path.read_text()), stats, wait_s=5.0)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result
