"""The work behind every candidate, each piece resumable: prune (BatchNorm re-estimated,
fine-tuned), export to ONNX, quantise to INT8, evaluate on the labelled split.

Each piece runs as a stage of `uda_seg_core.stages` (with `chained=False`) under OUT/work/,
stamped with the settings it depends on, so a rerun with the same settings reuses it and a
changed setting redoes only what depends on it; `Plan.work_done` counts what ran.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.inference.segmenter import BackendModule
from uda_seg_core.metrics import evaluate_model
from uda_seg_core.models import ClassIds, count_macs, count_parameters, load_model
from uda_seg_core.optimize.deploy.plan import (
    FINETUNE_METHOD,
    REFERENCE_ID,
    Candidate,
    Network,
    Plan,
    candidate_list,
    network_tag,
    networks,
    sha256_of,
)
from uda_seg_core.optimize.export import (
    calibration_images,
    export_onnx,
    metadata_from_checkpoint,
    pick_evenly,
    preprocess_frames,
    quantize_int8,
)
from uda_seg_core.optimize.structured import prune_checkpoint
from uda_seg_core.reporting import atomic_write_json
from uda_seg_core.stages import Stages

log = logging.getLogger(__name__)

def base_settings(p: Plan) -> dict:
    """What every piece of work depends on."""
    return {"checkpoint": str(Path(p.r.checkpoint).resolve()), "sha256": p.ckpt_sha256,
            "input_size": list(p.size), "torch": torch.__version__}


def pruning_settings(p: Plan, net: Network) -> dict:
    if net == (0.0, False):
        return base_settings(p)
    settings = {**base_settings(p), "ratio": net[0], "finetune_iters": p.r.finetune_iters,
                "finetune_method": FINETUNE_METHOD, "bn_batches": bn_batches_of(p, net),
                "data": str(p.root.resolve()), "overrides": list(p.r.overrides)}
    if p.student_scale != (1.0, 1.0):  # absent at full size: earlier work stays reusable
        settings["student_scale"] = list(p.student_scale)
    return settings


def bn_batches_of(p: Plan, net: Network) -> int:
    """No cut, no stale statistics: the distilled unpruned network skips the re-estimation."""
    return 0 if net[0] == 0 else p.r.bn_batches


def pruned_checkpoint(p: Plan, net: Network) -> Path:
    if net == (0.0, False):
        return Path(p.r.checkpoint)
    return p.work / network_tag(net) / "pruned.pt"


def finetune_overrides(p: Plan) -> list[str]:
    """The fine-tune reads unlabelled target frames of --data, nothing of the source."""
    return [f"data.target_root={p.root.resolve()}", f"data.target_format={p.fmt}",
            "data.num_workers=0",
            "data.limit=0", *p.r.overrides]


def make_pruned(p: Plan, stages: Stages, net: Network, progress: bool) -> None:
    if net == (0.0, False):
        return
    out = pruned_checkpoint(p, net)

    def action() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        prune_checkpoint(p.r.checkpoint, out, progress=progress, ratio=net[0],
                         finetune_iters=p.r.finetune_iters, finetune_method=FINETUNE_METHOD,
                         bn_batches=bn_batches_of(p, net), device=p.r.device,
                         student_scale=p.student_scale, overrides=finetune_overrides(p))
        p.work_done["pruned"] += 1

    _count(p, stages.run(f"prune-{network_tag(net)}", pruning_settings(p, net), [out], action,
                         say=log.info))


def _count(p: Plan, ran: bool) -> None:
    if not ran:
        p.work_done["reused"] += 1


class CalibrationFrames:
    """Target frames preprocessed for INT8 calibration, read once and only when needed."""

    def __init__(self, p: Plan, mean: Sequence[float], std: Sequence[float]):
        self.p, self.mean, self.std = p, mean, std
        self._frames: list[np.ndarray] | None = None

    def __call__(self) -> list[np.ndarray]:
        if self._frames is None:
            train = self.p.root / "train"
            files = calibration_images(train if train.is_dir() else self.p.root)
            self._frames = preprocess_frames(pick_evenly(files, self.p.r.calibration_frames),
                                             self.p.size, self.mean, self.std)
        return self._frames


def make_onnx(p: Plan, stages: Stages, c: Candidate, frames: CalibrationFrames) -> None:
    """The candidate's ONNX file: export (fp32) or quantisation of the fp32 export (INT8)."""
    settings = pruning_settings(p, c.network)
    if c.precision == "fp32":
        def action() -> None:
            model, ckpt = load_model(pruned_checkpoint(p, c.network))
            export_onnx(model.eval(), c.file, mode="pred", size=p.size,
                        metadata=metadata_from_checkpoint(ckpt, "pred", p.size))
            p.work_done["exported"] += 1
        _count(p, stages.run(f"export-{c.id}", settings, [c.file], action, say=log.info))
        return
    fp32 = c.file.with_name("fp32.onnx")
    settings = {**settings, "calibration_frames": p.r.calibration_frames,
                "per_channel": c.per_channel, "data": str(p.root.resolve())}

    def quantise() -> None:
        quantize_int8(fp32, c.file, frames(), per_channel=bool(c.per_channel))
        p.work_done["quantised"] += 1

    _count(p, stages.run(f"int8-{c.id}", settings, [c.file], quantise, say=log.info))


def eval_settings(p: Plan, c: Candidate | None, size: Sequence[int]) -> dict:
    return {"model": str(c.file if c else Path(p.r.checkpoint).resolve()),
            "model_sha256": sha256_of(c.file) if c else p.ckpt_sha256,
            "data": str(p.root.resolve()), "split": p.r.split, "limit": p.r.eval_limit,
            "input_size": [int(v) for v in size]}


def evaluate_candidate(p: Plan, stages: Stages, c: Candidate | None, dataset,
                       module: Callable[[], nn.Module], size: Sequence[int]) -> dict:
    """mIoU (and the rest of the summary) of a candidate, or of the reference (c None), on
    `dataset`, whose frames feed the network at `size` (H, W)."""
    name = c.id if c else REFERENCE_ID
    result = p.work / "eval" / f"{name}.json"

    def action() -> None:
        cm = evaluate_model(module(), dataset, "cpu")  # the checkpoint's classes
        atomic_write_json(result, {**cm.summary(), "images": len(dataset)})
        p.work_done["evaluated"] += 1

    settings = eval_settings(p, c, size)
    _count(p, stages.run(f"eval-{name}", settings, [result], action, say=log.info))
    return {**json.loads(result.read_text()), "input_size": settings["input_size"]}


def complexity_of(p: Plan, net: Network, cache: dict) -> dict:
    if net not in cache:
        model, _ = load_model(pruned_checkpoint(p, net))
        model.eval()
        cache[net] = {"params": count_parameters(model),
                      "macs": count_macs(model, (1, 3, *p.size))}
    return cache[net]


def _pruning_record(p: Plan, net: Network) -> dict:
    if net == (0.0, False):
        return {}
    ckpt = load_checkpoint(pruned_checkpoint(p, net))
    pruning = dict(ckpt.get("pruning", {}))
    ft = pruning.get("finetune", {})
    return {"scope": pruning.get("scope"), "finetune": {
        "method": ft.get("method", FINETUNE_METHOD), "iters": ft.get("iters", 0),
        "seconds": ft.get("seconds"), "final_losses": ft.get("final_losses", {}),
        "student_scale": ft.get("student_scale", [1.0, 1.0])},
        "bn_batches": pruning.get("bn_batches")}


def build_candidates(p: Plan, stages: Stages, dataset, reference_data,
                     reference_size: Sequence[int], progress: bool) -> dict:
    """Prune, export, quantise and evaluate every candidate on `dataset` (at the input size)
    and the reference on `reference_data` (at its own evaluation size, `reference_size`),
    reusing finished work; returns the reference's evaluation. Each candidate's `row` holds
    its complexity and mIoU."""
    p.candidates = candidate_list(p)
    ckpt = load_checkpoint(p.r.checkpoint)
    frames = CalibrationFrames(p, ckpt["mean"], ckpt["std"])
    nets = networks(p)
    steps = len(nets) + 2 * len(p.candidates) + 1
    bar = tqdm(total=steps, desc="deploy", dynamic_ncols=True, disable=not progress)

    def step(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    reference_model, _ = load_model(p.r.checkpoint)
    reference = evaluate_candidate(p, stages, None, reference_data,
                                   lambda: ClassIds(reference_model.eval()).eval(),
                                   reference_size)
    step("reference evaluated")
    cache: dict = {}
    for net in nets:
        make_pruned(p, stages, net, progress)
        step(f"made {network_tag(net)}")
    for c in p.candidates:
        make_onnx(p, stages, c, frames)
        step(f"{c.id} written")
    for c in p.candidates:
        summary = evaluate_candidate(p, stages, c, dataset, lambda c=c: BackendModule(
            OnnxRuntimeBackend(c.file, device="cpu", threads=p.threads), 12), p.size)
        c.row = {**complexity_of(p, c.network, cache), "miou": summary["miou"],
                 "accuracy": summary["accuracy"], **_pruning_record(p, c.network)}
        step(f"{c.id} evaluated")
    bar.close()
    reference_macs = count_macs(reference_model, (1, 3, *reference["input_size"]))
    return {**reference, **complexity_of(p, (0.0, False), cache), "macs": reference_macs}
