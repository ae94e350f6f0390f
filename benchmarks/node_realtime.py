"""The node end to end on a real CamVid bag at its recorded 30 fps: eager fp32, INT8 unpruned,
the deployed model and LRASPP-MobileNetV3 INT8 (the peer), in one run.

    .venv/bin/python benchmarks/node_realtime.py --camvid ../shared/data/CamVid-SegNet \\
        --checkpoint runs/adapted/best.pt --deployed runs/deploy/model.onnx --threads 2
    .venv/bin/python benchmarks/node_realtime.py ... --frames 5 --calibration-frames 2  # smoke

1. `uda-seg-bag write`: the --split (val) frames of --camvid at their 480x360, stamped at
   --fps (30), raw rgb8, with their labels (the folder is read in place, never copied);
2. the models, all served by the same segmentation_node, each at the input size its file
   records (the node's default; the deployed model at deploy's --input-size): the --checkpoint in
   eager PyTorch fp32; its ONNX Runtime INT8 export (static QDQ, calibrated on
   --calibration-frames frames of the folder's train split); the --deployed model.onnx
   (`uda-seg deploy`; left out when not given); torchvision's LRASPP-MobileNetV3-Large with
   12 classes and RANDOM weights, exported and quantised to INT8 the same way (speed only:
   its mIoU means nothing);
3. for each model in turn (--rounds rounds, a fresh random order each round): a node with
   camera QoS (best effort, depth 1, newest frame only), `uda-seg-bag evaluate`, and
   `uda-seg-bag play` at the recorded rate, restamping every header to the time it is
   published (so end-to-end latency is real); then the node is stopped, so no two models'
   thread pools are ever alive together.
Columns: node fps, frames the node's callback received (of those published), dropped by the
node (newest-frame policy) and lost before it (labelled frames with no mask that the node
never counted: a best-effort, depth-1 reader keeps only the newest sample while the
executor is busy; and, before uda_seg_ros.transport, Fast DDS's 512 KiB shared-memory
segment reused a 518 kB frame's buffer for its label), end-to-end latency (stamp -> mask
published) p50 / p99,
node latency (received -> published) p50, and the live mIoU over the frames processed.
Writes OUT/node_realtime.json and OUT/node_realtime.md (default OUT: runs/node_realtime).
Children get OMP_NUM_THREADS=--threads and OMP_WAIT_POLICY=PASSIVE unless set.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from uda_seg_core.reporting import (
    atomic_write_json,
    atomic_write_text,
    load_average,
    machine_description,
    markdown_table,
)
from uda_seg_tools.bag import IMAGE_TOPIC
from uda_seg_tools.demo_processes import MODEL_OWN_SIZE, bag_cli, bag_frame_size, live_run, run_step
from uda_seg_tools.ros_domain import child_environment, claim_domain_id

LRASPP = "LRASPP-MobileNetV3-L INT8 (random weights)"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--camvid", required=True, help="CamVid folder (either layout), read in place")
    p.add_argument("--checkpoint", required=True, help="the adapted checkpoint (.pt)")
    p.add_argument("--deployed", default="", help="model.onnx written by uda-seg deploy")
    p.add_argument("--split", default="val", help="the bag's split (default: val)")
    p.add_argument("--frames", type=int, default=0, help="only the first N frames (0 = all)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the node")
    p.add_argument("--calibration-frames", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="runs of every model, interleaved")
    p.add_argument("--seed", type=int, default=0, help="of the order within rounds")
    p.add_argument("--out", default="runs/node_realtime")
    return p.parse_args()


def write_bag(args: argparse.Namespace, out: Path) -> Path:
    bag = out / f"camvid_{args.split}_bag"
    argv = bag_cli("write", "--camvid", args.camvid, "--split", args.split, "--out", str(bag),
                   "--fps", str(args.fps), "--overwrite")
    if args.frames:
        argv += ["--limit", str(args.frames)]
    run_step(argv, "uda-seg-bag write", log=out / "bag_write.log")
    return bag


def bag_frames(bag: Path) -> int:
    with Reader(bag) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == IMAGE_TOPIC)


def calibration_frames(args: argparse.Namespace, size, mean, std) -> list[np.ndarray]:
    from uda_seg_core.optimize.export import calibration_images, pick_evenly, preprocess_frames

    train = Path(args.camvid) / "train"
    files = calibration_images(train if train.is_dir() else args.camvid)
    return preprocess_frames(pick_evenly(files, args.calibration_frames), size, mean, std)


def int8_export(args: argparse.Namespace, out: Path, size) -> Path:
    """The checkpoint as ONNX Runtime INT8, unpruned."""
    from uda_seg_core.optimize.export import export_checkpoint

    path = out / "models" / "adapted_int8.onnx"
    export_checkpoint(args.checkpoint, path, size=size, int8=True, calibration=args.camvid,
                      calibration_frames=args.calibration_frames, check_frames=0)
    return path


def lraspp_int8(args: argparse.Namespace, out: Path, size) -> Path:
    """torchvision LRASPP-MobileNetV3-Large, 12 classes, random weights, INT8 like ours."""
    import torch
    import torchvision.models.segmentation as tvseg

    from uda_seg_core.config import IMAGENET_MEAN, IMAGENET_STD
    from uda_seg_core.labels import CLASS_NAMES, PALETTE
    from uda_seg_core.optimize.export import export_onnx, metadata_from_checkpoint, quantize_int8

    torch.manual_seed(0)
    net = tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                          num_classes=len(CLASS_NAMES)).eval()
    described = {"class_names": list(CLASS_NAMES), "palette": PALETTE.tolist(),
                 "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                 "model_config": {"backbone": "lraspp_mobilenet_v3_large",
                                  "num_classes": len(CLASS_NAMES)}}
    fp32 = export_onnx(net, out / "models" / "lraspp_fp32.onnx", mode="pred", size=size,
                       metadata=metadata_from_checkpoint(described, "pred", size))
    frames = calibration_frames(args, size, IMAGENET_MEAN, IMAGENET_STD)
    return quantize_int8(fp32, out / "models" / "lraspp_int8.onnx", frames)


def prepare_models(args: argparse.Namespace, out: Path, size) -> dict[str, Path]:
    models = {"BiSeNet eager fp32 (adapted)": Path(args.checkpoint),
              "BiSeNet ONNX Runtime INT8, unpruned": int8_export(args, out, size)}
    if args.deployed:
        models["deployed (uda-seg deploy)"] = Path(args.deployed)
    models[LRASPP] = lraspp_int8(args, out, size)
    return models


def row_of(name: str, round_index: int, result: dict) -> dict:
    node = result.get("node", {})
    stages, counters = node.get("stages", {}), node.get("counters", {})

    def stage(key, q):
        value = stages.get(key, {})
        return value.get(q) if value.get("count") else None

    return {"model": name, "round": round_index, "fps": node.get("fps"),
            "network": node.get("input_size"),
            "dropped": counters.get("dropped"), "received": counters.get("received"),
            "processed": counters.get("processed"),
            "lost": result["frames_labelled"] - result["frames_matched"] - int(
                counters.get("dropped", 0) or 0),
            "frames": result["frames_labelled"], "matched": result["frames_matched"],
            "e2e_p50_ms": stage("end_to_end", "p50"), "e2e_p99_ms": stage("end_to_end", "p99"),
            "node_p50_ms": stage("node", "p50"), "inference_p50_ms": stage("inference", "p50"),
            "miou": result.get("miou")}


def _f(value, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value if scale == 1.0 else value * scale, fmt)


def markdown(doc: dict) -> str:
    lines = [
        "# The node on a real CamVid bag", "", f"`{doc['command']}`", "",
        (f"{doc['frames']} {doc['split']} frames of `{doc['camvid']}` at "
         f"{doc['frame_size'][1]}x{doc['frame_size'][0]}, recorded at {doc['fps']:g} fps and "
         f"played at that rate, restamped; each model at the input size its file records "
         f"(network column, W x H), masks at the frames' size, camera QoS, "
         f"OMP_NUM_THREADS={doc['threads']}, "
         f"OMP_WAIT_POLICY={doc['omp_wait_policy']}; {doc['machine']}; load average "
         f"{doc['loadavg_start']} at the start, {doc['loadavg_end']} at the end. "
         f"{LRASPP}: random weights, speed only (its mIoU means nothing)."), "",
    ]
    rows = [[r["model"], _network(r.get("network")), r["round"], _f(r["fps"], ".1f"),
             f"{_f(r['received'], 'd')}/{r['frames']}", _f(r["dropped"], "d"), r["lost"],
             f"{_f(r['e2e_p50_ms'], '.1f')} / {_f(r['e2e_p99_ms'], '.1f')}",
             _f(r["node_p50_ms"], ".1f"), _f(r["inference_p50_ms"], ".1f"),
             _f(r["miou"], ".2f", 100)] for r in doc["rows"]]
    lines.append(markdown_table(
        ["model", "network", "round", "fps", "received", "dropped", "lost",
         "end-to-end p50 / p99 ms", "node p50 ms", "inference p50 ms", "live mIoU (%)"],
        rows, align="ll" + "r" * 9))
    return "\n".join(lines) + "\n"


def _network(size) -> str:
    return f"{size[1]}x{size[0]}" if size else "-"


def main() -> int:
    args = parse_args()
    out = Path(args.out).resolve()
    (out / "models").mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load_start = load_average()
    bag = write_bag(args, out)
    size = bag_frame_size(bag)
    frames = bag_frames(bag)
    models = prepare_models(args, out, size)
    env = child_environment(claim_domain_id(from_environment=True))
    rng = np.random.default_rng(args.seed)
    rows = []
    for round_index in range(args.rounds):
        names = list(models)
        for i in rng.permutation(len(names)):
            name = names[i]
            print(f"[round {round_index + 1}/{args.rounds}] {name}", flush=True)
            result = live_run(f"r{round_index}_{i}", models[name], bag, frames, out, env,
                              paced=False, size=MODEL_OWN_SIZE)
            rows.append(row_of(name, round_index + 1, result))
    rows.sort(key=lambda r: (list(models).index(r["model"]), r["round"]))
    machine = machine_description(loadavg_start=load_start)
    doc = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "camvid": args.camvid, "split": args.split, "frames": frames, "fps": args.fps,
           "frame_size": list(size), "threads": args.threads,
           "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
           "machine": f"{machine['cpu']}, {machine['cores']} cores",
           "platform": machine["platform"], "loadavg_start": machine["loadavg_start"],
           "loadavg_end": machine["loadavg_end"],
           "versions": {k: machine[k] for k in ("python", "torch", "onnxruntime")},
           "models": {k: str(v) for k, v in models.items()}, "rows": rows,
           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_json(out / "node_realtime.json", doc)
    text = markdown(doc)
    atomic_write_text(out / "node_realtime.md", text)
    print("\n" + text + f"\nwritten: {out / 'node_realtime.md'}, {out / 'node_realtime.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
