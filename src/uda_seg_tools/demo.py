"""`make demo`: the whole system end to end, CPU only, no downloads.

    make demo                                   # = python -m uda_seg_tools.demo (synthetic)
    make demo CAMVID=../shared/data/CamVid-SegNet   # real CamVid frames as the target and the bag
    python -m uda_seg_tools.demo --fresh        # redo every stage, not only the live part
    python -m uda_seg_tools.demo --iters 600 --size 240x320 --out runs/demo_big

Stages (each prints its progress; everything lands under --out, default runs/demo):
  1 data        `uda-seg make-synthetic`: the sim (IDDA-format) and real (CamVid-format) pair
  2 source      `uda-seg train`: the shipped recipe's network (config/real_pretrained.yaml:
                BiSeNet on an ImageNet-pretrained EfficientNet-Lite0) on the sim labels only
                (the 'source only' baseline)
  3 adapt       `uda-seg adapt`: the same plus the fully-convolutional discriminator (FCD)
  4 prune       the paper's post-training pruning of the adapted model: global unstructured
                L1 (zeros in dense tensors: no faster)
  5 deploy      `uda-seg deploy` of the adapted model: structured pruning at --deploy-ratios
                (+ distillation from the adapted model on unlabelled target frames) and the
                unpruned model, each as ONNX fp32 and INT8, measured on the target val split
                and timed; the fastest within --max-loss mIoU points is deploy/model.onnx
  6 evaluate    `uda-seg evaluate` of every model on the bag's split (the deployed
                model.onnx through ONNX Runtime, as the node runs it)
  7 bag         `uda-seg-bag write`: that split as a rosbag2 (mcap) file, 30 fps stamps
  8 live paced  segmentation_node on the served model (model.onnx unless --serve) +
                `uda-seg-bag evaluate` + `uda-seg-bag play --pace-on
                segmentation/class_mask`: the player sends the next frame when the node's
                mask for the previous one arrived, so every frame is processed whatever the
                machine's speed, and the live mIoU must equal stage 6's figure for the
                served model (the node runs at the size stage 6 evaluates at; differences
                can only come from float rounding).
  9 live 30 fps the same bag at its recorded rate into a node with camera QoS (best
                effort, newest frame only): the frames it cannot keep up with are dropped
                and counted; the live mIoU is over the frames it did process. Also, unless
                --no-compare, the same for the paper's adapted + unstructured-pruned eager
                model, for contrast.
Then one table: offline mIoU of every model, live mIoU, node latency p50/p99, fps and
frames dropped; also written to summary.json and summary.md.

With --camvid PATH (a CamVid folder, colour or SegNet layout; `make demo CAMVID=PATH`) the
target domain is those real frames: adaptation, deploy (calibration, fine-tune, val) and
the bag use them (the bag's split: --camvid-split, default test when the folder has one,
else val); the source stays the simulator. The network then runs at --size (frames are
resized for evaluation, deploy and the node; labels and masks keep the frames' size).
The folder is read in place, never copied.

Stages 1-7 are reused on a rerun when their settings did not change (--fresh redoes
them); the live stages always run. Seeded: the same settings give the same data and
the same training on the same machine. Numbers on synthetic data are not CamVid numbers.
Children get OMP_WAIT_POLICY=PASSIVE unless the environment sets it (README, "Threads and
spinning": libgomp's spinning default made torch 3-4x slower on a busy machine).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from uda_seg_core.checkpoint import save_checkpoint
from uda_seg_core.config import from_dict
from uda_seg_core.data import build_dataset
from uda_seg_core.models import load_model
from uda_seg_core.pruning import prune_permanently
from uda_seg_core.stages import Stages
from uda_seg_tools.demo_processes import (
    DemoError,
    bag_cli,
    bag_frame_size,
    cli,
    live_run,
    run_step,
)
from uda_seg_tools.demo_settings import (
    PROFILE,
    DemoSettings,
    check_camvid,
    choose_threads,
    target_root,
    training_overrides,
)
from uda_seg_tools.ros_domain import NoFreeDomain, child_environment, claim_domain_id

STAGE_COUNT = 9
DEPLOYED = "deployed (uda-seg deploy)"


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


def prune_unstructured(checkpoint: Path, out: Path, amount: float) -> dict:
    """The paper's post-training pruning: global L1 over every conv, zeros made permanent."""
    model, ckpt = load_model(checkpoint)
    report = prune_permanently(model, amount)
    cfg = from_dict(ckpt["config"])
    save_checkpoint(out, model, cfg, pruning={"kind": "global_unstructured", "amount": amount,
                                              "source_checkpoint": str(checkpoint)})
    return report


def evaluate_offline(checkpoint: Path, data: Path, split: str, out: Path,
                     eval_size: tuple[int, int] | None = None) -> dict:
    size = ["--eval-size", str(eval_size[0]), str(eval_size[1])] if eval_size else []
    run_step(cli("evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split",
                 split, *size, "--device", "cpu", "--out", str(out)),
             f"uda-seg evaluate {checkpoint}", log=out.with_suffix(".log"))
    return json.loads((out / "metrics.json").read_text())


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
    split: str = "test"  # the target split evaluated offline and written to the bag

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def target(self) -> Path:
        return target_root(self.s, self.out)

    def stage(self, name: str, params: dict, outputs: list[Path], action) -> bool:
        return self.stages.run(name, params, outputs, action, say=say)

    def network_size(self) -> tuple[int, int]:
        """(H, W) the models run at: --size for real CamVid frames (resized), else the
        synthetic frames' own size (nothing resampled)."""
        if self.s.camvid:
            return self.s.hw
        image = build_dataset("camvid", self.target, self.split, with_labels=False)[0]["image"]
        return int(image.shape[0]), int(image.shape[1])

    def eval_size(self) -> tuple[int, int] | None:
        return self.s.hw if self.s.camvid else None


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
    target = f"target {d.target}" if s.camvid else "synthetic target"
    t = d.progress.stage(2, "source", f"BiSeNet-Lite0 (ImageNet weights) on sim labels only, "
                         f"{s.iters} iterations")
    profile = hashlib.sha256(PROFILE.read_bytes()).hexdigest()[:16]  # retrain when it changes
    params = {"iters": s.iters, "batch": s.batch_size, "seed": s.seed, "target": str(d.target),
              "profile": profile}
    d.stage("source", params, [d.checkpoints["source only"]], lambda: run_step(
        cli("train", "--overwrite", *training_overrides(s, out, "source_only", s.iters)),
        "uda-seg train"))
    d.progress.done("source", t)
    t = d.progress.stage(3, "adapt", f"adversarial adaptation with FCD, {s.adapt_iters} "
                         f"iterations, {target}")
    params = {"iters": s.adapt_iters, "batch": s.batch_size, "seed": s.seed,
              "target": str(d.target), "profile": profile}
    d.stage("adapt", params, [d.checkpoints["adapted (FCD)"]], lambda: run_step(
        cli("adapt", "--overwrite", *training_overrides(s, out, "adapted_fcd", s.adapt_iters),
            "adapt.discriminator=fcd"), "uda-seg adapt"))
    d.progress.done("adapt", t)


def pruning(d: DemoRun) -> str:
    """Stage 4: the paper's unstructured pruning of the adapted model; returns its name."""
    s = d.s
    t = d.progress.stage(4, "prune", f"global unstructured {s.unstructured:.0%} of the adapted "
                         f"model's weights (the paper's; zeros, no faster)")
    pruned, adapted = d.out / "pruned", d.checkpoints["adapted (FCD)"]
    unstructured = f"adapted + unstructured {s.unstructured:.0%}"
    d.checkpoints[unstructured] = pruned / "adapted_unstructured.pt"

    def prune() -> None:
        pruned.mkdir(parents=True, exist_ok=True)
        report = prune_unstructured(adapted, d.checkpoints[unstructured], s.unstructured)
        say(f"    global unstructured: {report['zeros']:,} of {report['numel']:,} weights are "
            f"zero ({report['sparsity']:.1%})")

    d.stage("prune", {"unstructured": s.unstructured}, [d.checkpoints[unstructured]], prune)
    d.progress.done("prune", t)
    return unstructured


def deploy_stage(d: DemoRun) -> dict:
    """Stage 5: `uda-seg deploy` of the adapted model; returns deploy.json's document."""
    s = d.s
    h, w = d.network_size()
    t = d.progress.stage(5, "deploy", f"structured pruning {s.deploy_ratios} + fp32/INT8 ONNX, "
                         f"the fastest within {s.max_loss:g} mIoU points, at {h}x{w}")
    folder = d.out / "deploy"
    d.checkpoints[DEPLOYED] = folder / "model.onnx"
    argv = cli("deploy", "--checkpoint", str(d.checkpoints["adapted (FCD)"]), "--data",
               str(d.target), "--out", str(folder), "--input-size", f"{h}x{w}", "--ratios",
               s.deploy_ratios, "--finetune-iters", str(s.finetune_iters), "--calibration-frames",
               str(s.calibration_frames), "--max-loss", str(s.max_loss), "--bn-batches",
               str(s.bn_batches), "--repeats", str(s.deploy_repeats), "--device", "cpu")
    params = {"ratios": s.deploy_ratios, "finetune_iters": s.finetune_iters,
              "max_loss": s.max_loss, "calibration_frames": s.calibration_frames,
              "bn_batches": s.bn_batches, "repeats": s.deploy_repeats,
              "size": [h, w], "target": str(d.target)}
    d.stage("deploy", params, [folder / "model.onnx", folder / "deploy.json"],
            lambda: run_step(argv, "uda-seg deploy", log=folder.with_suffix(".log")))
    doc = json.loads((folder / "deploy.json").read_text())
    chosen = next(c for c in doc["candidates"] if c["chosen"])
    d.progress.done("deploy", t, f"served {chosen['id']}: p50 {chosen['p50_ms']:.1f} ms vs "
                    f"{doc['reference']['p50_ms']:.1f} ms eager, {chosen['loss_points']:.2f} "
                    f"points below the adapted model on val")
    return doc


def offline_evaluation(d: DemoRun) -> dict[str, dict]:
    """Stage 6: `uda-seg evaluate` of every model on the bag's split."""
    t = d.progress.stage(6, "evaluate", f"offline mIoU of every model on the target "
                         f"{d.split} split")
    eval_dir = d.out / "eval"

    def evaluate_all() -> None:
        eval_dir.mkdir(parents=True, exist_ok=True)
        for i, (name, ckpt) in enumerate(d.checkpoints.items()):
            metrics = evaluate_offline(ckpt, d.target, d.split, eval_dir / f"model{i}",
                                       d.eval_size() if ckpt.suffix != ".onnx" else None)
            say(f"    {name}: mIoU {_pct(metrics['miou'])}, pixel accuracy "
                f"{_pct(metrics['accuracy'])}")

    d.stage("evaluate", {"models": list(d.checkpoints), "split": d.split,
                         "target": str(d.target)},
            [eval_dir / f"model{i}" / "metrics.json" for i in range(len(d.checkpoints))],
            evaluate_all)
    offline = {name: json.loads((eval_dir / f"model{i}" / "metrics.json").read_text())
               for i, name in enumerate(d.checkpoints)}
    d.progress.done("evaluate", t)
    return offline


def write_bag(d: DemoRun, frames: int) -> Path:
    """Stage 7: the evaluated split as a rosbag2 (mcap) file."""
    s = d.s
    t = d.progress.stage(7, "bag", f"target {d.split} split -> rosbag2 (mcap), {s.fps:g} fps "
                         f"stamps")
    bag = d.out / f"target_{d.split}_bag"
    d.stage("bag", {"fps": s.fps, "split": d.split, "target": str(d.target)},
            [bag / "metadata.yaml"], lambda: run_step(
                bag_cli("write", "--camvid", str(d.target), "--split", d.split, "--out",
                        str(bag), "--fps", str(s.fps), "--overwrite"), "uda-seg-bag write"))
    d.progress.done("bag", t, f"{frames} frames")
    return bag


def live(d: DemoRun, served: str, compare: str, bag: Path, frames: int) -> dict[str, dict]:
    """Stages 8-9: the node on the served model, paced, then at the bag's own rate (and the
    paper's model at the bag's rate, for contrast)."""
    s, out = d.s, d.out
    # A private domain (ROS_DOMAIN_ID from the environment wins): the demo's topics never
    # mix with those of another demo or a test run on this machine.
    domain = claim_domain_id(from_environment=True)
    env = child_environment(domain)
    size = d.network_size()
    results: dict[str, dict] = {}
    t = d.progress.stage(8, "live paced",
                         f"node on '{served}', every frame (ROS_DOMAIN_ID={domain})")
    results[f"{served}, paced"] = live_run("paced", d.checkpoints[served], bag, frames, out,
                                           env, paced=True, size=size)
    d.progress.done("live paced", t)
    if s.realtime:
        t = d.progress.stage(9, "live 30 fps", f"the bag at its recorded {s.fps:g} fps, camera QoS")
        runs = [("realtime", served)] + ([("realtime_compare", compare)] if s.compare else [])
        for name, model in runs:
            results[f"{model}, {s.fps:g} fps"] = live_run(name, d.checkpoints[model], bag,
                                                          frames, out, env, paced=False,
                                                          size=size)
        d.progress.done("live 30 fps", t)
    return results


def write_summary(d: DemoRun, offline: dict, results: dict, served: str, bag: Path,
                  deployed: dict) -> dict:
    """The table and its notes on stdout, in summary.md and (with the numbers) summary.json."""
    frames = offline[served]["images"]
    table = summary_table(offline, results, served)
    paced = results[f"{served}, paced"]
    gap = None
    if paced.get("miou") is not None and offline[served].get("miou") is not None:
        gap = 100 * abs(paced["miou"] - offline[served]["miou"])
    total = time.monotonic() - d.progress.start
    gap_text = "n/a" if gap is None else f"{gap:.2f}"
    fh, fw = bag_frame_size(bag)
    nh, nw = d.network_size()
    chosen = next(c for c in deployed["candidates"] if c["chosen"])
    where = (f"real CamVid frames of {d.target}" if d.s.camvid
             else "synthetic CamVid-style test frames; not CamVid numbers")
    notes = [
        (f"mIoU over the 11 named classes in %, on {frames} {d.split} frames ({fh}x{fw}, "
         f"networks at {nh}x{nw}): {where}."),
        (f"deployed: {chosen['id']} (ratio {chosen['ratio']:g}, {chosen['precision']}), "
         f"{chosen['loss_points']:.2f} points below the adapted model on the "
         f"{deployed['data']['split']} split, p50 {chosen['p50_ms']:.1f} ms vs "
         f"{deployed['reference']['p50_ms']:.1f} ms eager in deploy's timing "
         f"(deploy/deploy.md has every candidate)."),
        (f"live paced vs offline for the served model: {gap_text} points apart "
         f"({paced['frames_missed']} frames missed)."),
        ("node latency = image received -> mask published inside the node; end-to-end = header "
         "stamp (set by the player at publish) -> mask published."),
        f"wall time {total / 60:.1f} min; stage seconds: {json.dumps(d.progress.times)}",
    ]
    if d.s.camvid and d.split == deployed["data"]["split"]:
        notes.insert(2, f"the {d.split} split both chose the deployed model and measures it "
                        f"here (the folder has no other labelled split).")
    text = table + "\n\n" + "\n".join(f"- {n}" for n in notes)
    say("\n" + text)
    summary = {"settings": asdict(d.s), "offline": offline, "live": results, "served": served,
               "deploy": {"chosen": chosen, "reference": deployed["reference"]},
               "paced_vs_offline_points": gap, "stage_seconds": d.progress.times,
               "wall_seconds": round(total, 1)}
    (d.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (d.out / "summary.md").write_text(text + "\n")
    say(f"\nwritten: {d.out / 'summary.md'}, {d.out / 'summary.json'}")
    return summary


def run_demo(s: DemoSettings, fresh: bool = False) -> dict:
    split = check_camvid(s) if s.camvid else "test"  # a bad --camvid fails before any work
    # Absolute: checkpoints remember their data roots, and deploy's fine-tune reads them.
    out = Path(s.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    d = DemoRun(s, out, Progress(), Stages(out, fresh), {}, split)
    threads = choose_threads(s.threads)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by every child
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any child imports torch
    say(f"uda_seg demo -> {out}  (settings: {json.dumps(asdict(s))}; "
        f"threads per process: {threads or 'all cores'})")
    data_and_training(d)
    unstructured = pruning(d)
    deployed = deploy_stage(d)
    offline = offline_evaluation(d)
    frames = offline[unstructured]["images"]
    bag = write_bag(d, frames)
    served = DEPLOYED if s.serve == "deployed" else unstructured
    compare = unstructured if served == DEPLOYED else DEPLOYED
    return write_summary(d, offline, live(d, served, compare, bag, frames), served, bag,
                         deployed)


def build_parser() -> argparse.ArgumentParser:
    d = DemoSettings()
    p = argparse.ArgumentParser(prog="python -m uda_seg_tools.demo", description=__doc__,
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
    p.add_argument("--deploy-ratios", default=d.deploy_ratios,
                   help="channel-pruning ratios uda-seg deploy tries (default: %(default)s)")
    p.add_argument("--finetune-iters", type=int, default=d.finetune_iters,
                   help="deploy's distillation iterations after each cut (default: %(default)s)")
    p.add_argument("--max-loss", type=float, default=d.max_loss,
                   help="mIoU points the deployed model may lose (default: %(default)s)")
    p.add_argument("--calibration-frames", type=int, default=d.calibration_frames)
    p.add_argument("--bn-batches", type=int, default=d.bn_batches,
                   help="deploy's BatchNorm re-estimation batches (default: %(default)s)")
    p.add_argument("--deploy-repeats", type=int, default=d.deploy_repeats,
                   help="deploy's timed runs per candidate (default: %(default)s)")
    p.add_argument("--serve", choices=["deployed", "unstructured"], default=d.serve,
                   help="model the node serves (default: %(default)s)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the 30 fps run of the model that is not served")
    p.add_argument("--camvid", default=d.camvid, metavar="PATH",
                   help="a real CamVid folder (either layout) as the target domain and the bag "
                   "(default: the synthetic real-style frames); `make demo CAMVID=PATH`")
    p.add_argument("--camvid-split", default=d.camvid_split,
                   help="the bag's split of --camvid (default: test if present, else val)")
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
    except (DemoError, NoFreeDomain) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
