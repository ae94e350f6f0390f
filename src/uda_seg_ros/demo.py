"""`make demo`: the whole system end to end on the embedded synthetic data, no downloads.

    make demo                                   # = python -m uda_seg_ros.demo
    python -m uda_seg_ros.demo --fresh          # redo every stage, not only the live part
    python -m uda_seg_ros.demo --iters 600 --size 240x320 --out runs/demo_big

Stages (each prints its progress; everything lands under --out, default runs/demo):
  1 data        `uda-seg make-synthetic`: the sim (IDDA-format) and real (CamVid-format) pair
  2 source      `uda-seg train`: BiSeNet-R18 on the sim labels only (the 'source only' baseline)
  3 adapt       `uda-seg adapt`: the same plus the fully-convolutional discriminator (FCD)
  4 prune       post-training pruning of the adapted model: global unstructured L1 (the
                paper's; zeros only) and structured channel pruning + a short adversarial
                fine-tune (`uda-seg prune-structured`; smaller, really faster). The node
                serves the unstructured one (--serve structured for the faster one).
  5 evaluate    `uda-seg evaluate` of every model on the real-style CamVid test split
  6 bag         `uda-seg-bag write`: that test split as a rosbag2 (mcap) file, 30 fps stamps
  7 live paced  segmentation_node + `uda-seg-bag evaluate` + `uda-seg-bag play --pace-on
                segmentation/class_mask`: the player sends the next frame when the node's
                mask for the previous one arrived, so every frame is processed whatever the
                machine's speed, and the live mIoU must equal stage 5's figure for the
                served model (the node runs at the frames' own size, so neither side
                resamples; differences can only come from float rounding).
  8 live 30 fps the same bag at its recorded rate into a node with camera QoS (best
                effort, newest frame only): the frames it cannot keep up with are dropped
                and counted; the live mIoU is over the frames it did process.
Then one table: offline mIoU source only vs adapted vs pruned, live mIoU, node latency
p50/p99, fps and frames dropped; also written to summary.json and summary.md.

Stages 1-6 are reused on a rerun when their settings did not change (--fresh redoes
them); the live stages always run. Seeded: the same settings give the same data and
the same training on the same machine. Numbers on synthetic data are not CamVid numbers.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rosbags.rosbag2 import Reader

from uda_seg_core.checkpoint import save_checkpoint
from uda_seg_core.config import from_dict
from uda_seg_core.models import load_model
from uda_seg_core.pruning import prune_permanently
from uda_seg_core.stages import StageError, Stages
from uda_seg_ros.bag import IMAGE_TOPIC, typestore
from uda_seg_ros.live_eval import merge_node_stats

MASK_TOPIC = "segmentation/class_mask"
STAGE_COUNT = 8


@dataclass
class DemoSettings:
    out: str = "runs/demo"
    seed: int = 0
    size: str = "120x160"  # H x W of both domains (CamVid-style 4:3)
    num_source: int = 200
    num_target: int = 100  # 60/20/20 train/val/test
    iters: int = 300  # source-only training iterations (batch 4)
    adapt_iters: int = 300  # adaptation iterations (one source + one target batch each)
    batch_size: int = 4
    unstructured: float = 0.3  # global L1 sparsity of the post-training unstructured pruning
    structured: float = 0.2  # fraction of channels removed (0.3 cost ~6 mIoU points here)
    finetune_iters: int = 60
    # Which pruned model the node serves. 'unstructured' is the paper's adapted + optimised
    # model and kept the adaptation gain here; 'structured' is smaller and really faster but
    # lost most of the gain after the short fine-tune (see the demo table).
    serve: str = "unstructured"
    fps: float = 30.0
    realtime: bool = True
    threads: int = 0  # torch/OpenMP threads per child process; 0 = auto (see choose_threads)

    @property
    def hw(self) -> tuple[int, int]:
        h, w = (int(v) for v in self.size.lower().split("x"))
        return h, w


# A stage that failed; the message names it and where its log is.
DemoError = StageError


class Progress:
    def __init__(self):
        self.start = time.monotonic()
        self.times: dict[str, float] = {}

    def stage(self, number: int, name: str, what: str) -> float:
        elapsed = time.monotonic() - self.start
        print(f"\n[{number}/{STAGE_COUNT}] {name}: {what}  (t={elapsed:.0f} s)", flush=True)
        return time.monotonic()

    def done(self, name: str, since: float, note: str = "") -> None:
        self.times[name] = round(time.monotonic() - since, 1)
        print(f"    {name} done in {self.times[name]:.0f} s{'; ' + note if note else ''}",
              flush=True)


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
    return [sys.executable, "-m", "uda_seg_ros.bag", *args]


def choose_threads(requested: int) -> int:
    """Threads per process: `requested` if > 0; else 1 when the load average shows other
    jobs on the cores, and 0 (torch's default, all cores) on an idle machine.

    OpenMP threads of several processes on the same few cores spin against each other:
    here, under a load of 8 on 2 cores, a training iteration took 8 s with 2 threads and
    1.3 s with 1.
    """
    if requested > 0:
        return requested
    try:
        busy = os.getloadavg()[0] >= 1.0
    except OSError:
        busy = False
    return 1 if busy else 0


def training_overrides(s: DemoSettings, out: Path, run_name: str, iters: int) -> list[str]:
    h, w = s.hw
    values = {
        "model.backbone": "resnet18", "model.pretrained": "''",  # random init: nothing to download
        "data.source_format": "idda", "data.source_root": str(out / "data" / "idda"),
        "data.target_format": "camvid", "data.target_root": str(out / "data" / "camvid"),
        "data.crop_size": f"[{h},{w}]", "data.num_workers": 0,
        "train.batch_size": s.batch_size, "train.max_iters": iters, "train.seed": s.seed,
        "train.device": "cpu", "train.val_every": max(1, iters // 3),
        "train.checkpoint_every": iters, "train.out_dir": str(out / "runs"),
        "train.run_name": run_name, "inference.input_size": f"[{h},{w}]",
    }
    return [f"{k}={v}" for k, v in values.items()]


def prune_unstructured(checkpoint: Path, out: Path, amount: float) -> dict:
    """The paper's post-training pruning: global L1 over every conv, zeros made permanent."""
    model, ckpt = load_model(checkpoint)
    report = prune_permanently(model, amount)
    cfg = from_dict(ckpt["config"])
    save_checkpoint(out, model, cfg, pruning={"kind": "global_unstructured", "amount": amount,
                                              "source_checkpoint": str(checkpoint)})
    return report


def evaluate_offline(checkpoint: Path, data: Path, out: Path) -> dict:
    run_step(cli("evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split",
                 "test",
                 "--device", "cpu", "--out", str(out)), f"uda-seg evaluate {checkpoint}",
             log=out.with_suffix(".log"))
    return json.loads((out / "metrics.json").read_text())


# ------------------------------------------------------------------ live (ROS 2) stages

def claim_domain_id() -> tuple[int, object]:
    """A ROS_DOMAIN_ID no other demo or test on this machine holds (flock, like the tests),
    so the demo's topics never mix with theirs; ROS_DOMAIN_ID in the environment wins."""
    if os.environ.get("ROS_DOMAIN_ID"):
        return int(os.environ["ROS_DOMAIN_ID"]), None
    lock_dir = Path(tempfile.gettempdir()) / "uda_seg_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    for domain in range(101, 0, -1):
        # held open, not in a `with`: the open lock file is the claim on the domain
        fh = open(lock_dir / f"{domain}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        return domain, fh
    raise DemoError("every ROS domain 1-101 is locked by other processes; set ROS_DOMAIN_ID")


def ros_environment(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
                "RCUTILS_COLORIZED_OUTPUT": "0"})
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


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


def live_run(name: str, model: Path, bag: Path, frames: int, out: Path, env: dict,
             paced: bool) -> dict:
    """Node + evaluator + player; returns the evaluator's result with the node's stats."""
    h, w = bag_frame_size(bag)
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
        print(f"    node ready ({model.name}, {w}x{h}); evaluator and player starting", flush=True)
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


# ------------------------------------------------------------------ the table

def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _ms(stage: dict | None) -> str:
    if not stage or not stage.get("count"):
        return "-"
    return f"{stage['p50']:.1f} / {stage['p99']:.1f}"


def summary_table(offline: dict[str, dict], live: dict[str, dict], served: str) -> str:
    head = ("| run | mIoU (11) | pixel acc. | frames | dropped | fps | node latency p50 / p99 (ms) "
            "| end-to-end p50 / p99 (ms) |")
    lines = [head, "|" + "---|" * 8]
    for name, metrics in offline.items():
        tag = " (served)" if name == served else ""
        lines.append(f"| offline: {name}{tag} | {_pct(metrics.get('miou'))} | "
                     f"{_pct(metrics.get('accuracy'))} | {metrics.get('images', '-')} | - | - | - "
                     f"| - |")
    for name, result in live.items():
        node = result.get("node", {})
        counters = node.get("counters", {})
        stages = node.get("stages", {})
        fps = node.get("fps")
        lines.append(
            f"| live: {name} | {_pct(result.get('miou'))} | {_pct(result.get('accuracy'))} | "
            f"{result['frames_matched']}/{result['frames_labelled']} | "
            f"{counters.get('dropped', '-')} | {'-' if fps is None else f'{fps:.1f}'} | "
            f"{_ms(stages.get('node'))} | {_ms(stages.get('end_to_end'))} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ main

def say(line: str) -> None:
    print(line, flush=True)


@dataclass
class DemoRun:
    """What the stages of one demo share: settings, folders, progress and the models made."""

    s: DemoSettings
    out: Path
    progress: Progress
    stages: Stages
    checkpoints: dict[str, Path]

    @property
    def data(self) -> Path:
        return self.out / "data"

    def stage(self, name: str, params: dict, outputs: list[Path], action) -> bool:
        return self.stages.run(name, params, outputs, action, say=say)


def data_and_training(d: DemoRun) -> None:
    """Stages 1-3: the synthetic pair, the source-only and the adapted model."""
    s, out, data = d.s, d.out, d.data
    h, w = s.hw
    t = d.progress.stage(1, "data", f"synthetic sim/real pair at {h}x{w}")
    d.stage("data", {"seed": s.seed, "size": s.size, "num_source": s.num_source,
                     "num_target": s.num_target},
            [data / "idda" / "rgb", data / "camvid" / "test"],
            lambda: run_step(cli("make-synthetic", "--out", str(data), "--seed", str(s.seed),
                                 "--size", f"{h}x{w}", "--num-source", str(s.num_source),
                                 "--num-target", str(s.num_target)), "make-synthetic"))
    d.progress.done("data", t)
    runs = out / "runs"
    d.checkpoints.update({"source only": runs / "source_only" / "best.pt",
                          "adapted (FCD)": runs / "adapted_fcd" / "best.pt"})
    t = d.progress.stage(2, "source", f"BiSeNet-R18 on sim labels only, {s.iters} iterations")
    params = {"iters": s.iters, "batch": s.batch_size, "seed": s.seed}
    d.stage("source", params, [d.checkpoints["source only"]], lambda: run_step(
        cli("train", "--overwrite", *training_overrides(s, out, "source_only", s.iters)),
        "uda-seg train"))
    d.progress.done("source", t)
    t = d.progress.stage(3, "adapt", f"adversarial adaptation with FCD, {s.adapt_iters} iterations")
    params = {"iters": s.adapt_iters, "batch": s.batch_size, "seed": s.seed}
    d.stage("adapt", params, [d.checkpoints["adapted (FCD)"]], lambda: run_step(
        cli("adapt", "--overwrite", *training_overrides(s, out, "adapted_fcd", s.adapt_iters),
            "adapt.discriminator=fcd"), "uda-seg adapt"))
    d.progress.done("adapt", t)


def pruning(d: DemoRun) -> tuple[str, str]:
    """Stage 4: unstructured and structured pruning of the adapted model; returns the names
    of the two pruned models."""
    s = d.s
    t = d.progress.stage(4, "prune", f"global unstructured {s.unstructured:.0%} and structured "
                         f"{s.structured:.0%} channels + {s.finetune_iters}-iteration fine-tune")
    pruned, adapted = d.out / "pruned", d.checkpoints["adapted (FCD)"]
    unstructured = f"adapted + unstructured {s.unstructured:.0%}"
    structured = f"adapted + structured {s.structured:.0%}"
    d.checkpoints[unstructured] = pruned / "adapted_unstructured.pt"
    d.checkpoints[structured] = pruned / "adapted_structured.pt"

    def prune() -> None:
        pruned.mkdir(parents=True, exist_ok=True)
        report = prune_unstructured(adapted, d.checkpoints[unstructured], s.unstructured)
        say(f"    global unstructured: {report['zeros']:,} of {report['numel']:,} weights are "
            f"zero ({report['sparsity']:.1%})")
        argv = cli("prune-structured", "--checkpoint", str(adapted),
                   "--ratio", str(s.structured), "--finetune-iters", str(s.finetune_iters),
                   # best.pt holds no discriminator: a fresh FCD keeps the fine-tune adversarial
                   # (a supervised one would pull the model back towards the source domain).
                   "--finetune-method", "adversarial",
                   "--device", "cpu", "--out", str(d.checkpoints[structured]))
        run_step(argv, "uda-seg prune-structured")

    params = {"unstructured": s.unstructured, "structured": s.structured,
              "finetune_iters": s.finetune_iters}
    d.stage("prune", params, [d.checkpoints[unstructured], d.checkpoints[structured]], prune)
    d.progress.done("prune", t)
    return unstructured, structured


def offline_evaluation(d: DemoRun) -> dict[str, dict]:
    """Stage 5: `uda-seg evaluate` of every model on the CamVid-style test split."""
    t = d.progress.stage(5, "evaluate",
                         "offline mIoU of every model on the CamVid-style test split")
    eval_dir = d.out / "eval"

    def evaluate_all() -> None:
        eval_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, ckpt) in enumerate(d.checkpoints.items()):
            metrics = evaluate_offline(ckpt, d.data / "camvid", eval_dir / f"model{i}")
            say(f"    {name}: mIoU {_pct(metrics['miou'])}, pixel accuracy "
                f"{_pct(metrics['accuracy'])}")

    d.stage("evaluate", {"models": list(d.checkpoints)},
            [eval_dir / f"model{i}" / "metrics.json" for i in range(len(d.checkpoints))],
            evaluate_all)
    offline = {name: json.loads((eval_dir / f"model{i}" / "metrics.json").read_text())
               for i, name in enumerate(d.checkpoints)}
    d.progress.done("evaluate", t)
    return offline


def write_bag(d: DemoRun, frames: int) -> Path:
    """Stage 6: the test split as a rosbag2 (mcap) file."""
    s = d.s
    t = d.progress.stage(6, "bag",
                         f"CamVid-style test split -> rosbag2 (mcap), {s.fps:g} fps stamps")
    bag = d.out / "camvid_test_bag"
    d.stage("bag", {"fps": s.fps}, [bag / "metadata.yaml"], lambda: run_step(
        bag_cli("write", "--camvid", str(d.data / "camvid"), "--split", "test", "--out", str(bag),
                "--fps", str(s.fps), "--overwrite"), "uda-seg-bag write"))
    d.progress.done("bag", t, f"{frames} frames")
    return bag


def live(d: DemoRun, served: str, bag: Path, frames: int) -> dict[str, dict]:
    """Stages 7-8: the node on the served model, paced, then at the bag's own rate."""
    s, out = d.s, d.out
    domain, _lock = claim_domain_id()
    env = ros_environment(domain)
    results: dict[str, dict] = {}
    t = d.progress.stage(7, "live paced",
                         f"node on '{served}', every frame (ROS_DOMAIN_ID={domain})")
    results["paced, every frame"] = live_run("paced", d.checkpoints[served], bag, frames, out, env,
                                             paced=True)
    d.progress.done("live paced", t)
    if s.realtime:
        t = d.progress.stage(8, "live 30 fps", f"the bag at its recorded {s.fps:g} fps, camera QoS")
        results[f"real time, {s.fps:g} fps"] = live_run("realtime", d.checkpoints[served], bag,
                                                        frames, out, env, paced=False)
        d.progress.done("live 30 fps", t)
    return results


def write_summary(d: DemoRun, offline: dict, results: dict, served: str, bag: Path) -> dict:
    """The table and its notes on stdout, in summary.md and (with the numbers) summary.json."""
    frames = offline[served]["images"]
    table = summary_table(offline, results, served)
    paced = results["paced, every frame"]
    gap = None
    if paced.get("miou") is not None and offline[served].get("miou") is not None:
        gap = 100 * abs(paced["miou"] - offline[served]["miou"])
    total = time.monotonic() - d.progress.start
    gap_text = "n/a" if gap is None else f"{gap:.2f}"
    fh, fw = bag_frame_size(bag)
    notes = [
        (f"mIoU over the 11 named classes in %, on {frames} synthetic CamVid-style test frames "
         f"({fh}x{fw}); not CamVid numbers."),
        (f"live paced vs offline for the served model: {gap_text} points apart "
         f"({paced['frames_missed']} frames missed)."),
        ("node latency = image received -> mask published inside the node; end-to-end = header "
         "stamp (set by the player at publish) -> mask published."),
        f"wall time {total / 60:.1f} min; stage seconds: {json.dumps(d.progress.times)}",
    ]
    text = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    say("\n" + text)
    summary = {"settings": asdict(d.s), "offline": offline, "live": results, "served": served,
               "paced_vs_offline_points": gap, "stage_seconds": d.progress.times,
               "wall_seconds": round(total, 1)}
    (d.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (d.out / "summary.md").write_text(text + "\n")
    say(f"\nwritten: {d.out / 'summary.md'}, {d.out / 'summary.json'}")
    return summary


def run_demo(s: DemoSettings, fresh: bool = False) -> dict:
    # Absolute: checkpoints remember their data roots, and prune-structured's fine-tune reads them.
    out = Path(s.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    d = DemoRun(s, out, Progress(), Stages(out, fresh), {})
    threads = choose_threads(s.threads)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by every child
    say(f"uda_seg demo -> {out}  (settings: {json.dumps(asdict(s))}; "
        f"threads per process: {threads or 'all cores'})")
    data_and_training(d)
    unstructured, structured = pruning(d)
    offline = offline_evaluation(d)
    frames = offline[unstructured]["images"]
    bag = write_bag(d, frames)
    served = unstructured if s.serve == "unstructured" else structured
    return write_summary(d, offline, live(d, served, bag, frames), served, bag)


def build_parser() -> argparse.ArgumentParser:
    d = DemoSettings()
    p = argparse.ArgumentParser(prog="python -m uda_seg_ros.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out, help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--size", default=d.size,
                   help="H x W of the synthetic frames (default: %(default)s)")
    p.add_argument("--num-source", type=int, default=d.num_source)
    p.add_argument("--num-target", type=int, default=d.num_target)
    p.add_argument("--iters", type=int, default=d.iters, help="source-only training iterations")
    p.add_argument("--adapt-iters", type=int, default=d.adapt_iters, help="adaptation iterations")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--unstructured", type=float, default=d.unstructured,
                   help="global unstructured sparsity (default: %(default)s)")
    p.add_argument("--structured", type=float, default=d.structured,
                   help="fraction of channels removed (default: %(default)s)")
    p.add_argument("--finetune-iters", type=int, default=d.finetune_iters)
    p.add_argument("--serve", choices=["unstructured", "structured"], default=d.serve,
                   help="pruned model the node serves (default: %(default)s)")
    p.add_argument("--fps", type=float, default=d.fps, help="frame rate of the bag's stamps")
    p.add_argument("--no-realtime", dest="realtime", action="store_false",
                   help="skip stage 8 (the recorded-rate run)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads per process (default 0 = auto: 1 on a busy machine, "
                   "else all cores)")
    p.add_argument("--fresh", action="store_true", help="redo every stage")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k != "fresh"})
    try:
        settings.hw  # noqa: B018 - validates --size
    except ValueError:
        print(f"demo: --size must look like 120x160, got {args.size!r}", file=sys.stderr)
        return 2
    try:
        run_demo(settings, fresh=args.fresh)
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
