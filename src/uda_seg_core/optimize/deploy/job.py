"""`deploy`: the whole job: check the request, build and measure every candidate, time them
in one run, choose, and write OUT/model.onnx, deploy.json and deploy.md."""
from __future__ import annotations

import time

import torch

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.evaluate import checkpoint_eval_split
from uda_seg_core.optimize.deploy.choice import first_frame, time_all
from uda_seg_core.optimize.deploy.plan import (
    DeployRequest,
    NothingWithinBudget,
    check_request,
    student_scale,
)
from uda_seg_core.optimize.deploy.report import markdown, nothing_served, report, write_model
from uda_seg_core.optimize.deploy.work import build_candidates
from uda_seg_core.reporting import atomic_write_json, atomic_write_text, load_average
from uda_seg_core.stages import Stages


def deploy(request: DeployRequest, progress: bool = True) -> dict:
    """Check, build and measure every candidate, choose, write OUT/model.onnx, deploy.json
    and deploy.md; returns deploy.json's document."""
    started, load_start = time.perf_counter(), load_average()
    p = check_request(request)
    p.out.mkdir(parents=True, exist_ok=True)
    stages = Stages(p.work, fresh=p.r.fresh, chained=False)
    ckpt = load_checkpoint(p.r.checkpoint)
    dataset = checkpoint_eval_split(ckpt, p.root, p.r.split, p.fmt, limit=p.r.eval_limit,
                                    eval_size=list(p.size))
    reference_data = checkpoint_eval_split(ckpt, p.root, p.r.split, p.fmt,
                                           limit=p.r.eval_limit)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(p.threads)
    try:
        reference_frame = first_frame(reference_data)  # its size: the reference's own
        p.student_scale = student_scale(p.size, reference_frame.shape[-2:])
        reference = build_candidates(p, stages, dataset, reference_data,
                                     reference_frame.shape[-2:], progress)
        timings = time_all(p, first_frame(dataset), reference_frame, progress)
    finally:
        torch.set_num_threads(previous_threads)
    doc = report(p, reference, timings, len(dataset), load_start,
                 time.perf_counter() - started)
    chosen = next((c for c in doc["candidates"] if c["chosen"]), None)
    if chosen is None:
        (p.out / "model.onnx").unlink(missing_ok=True)  # never disagrees with deploy.json
    else:
        write_model(p, chosen, doc["reference"])
    atomic_write_json(p.out / "deploy.json", doc)
    atomic_write_text(p.out / "deploy.md", markdown(doc))
    if chosen is None:
        raise NothingWithinBudget(f"{nothing_served(doc)} ({p.out / 'deploy.md'})")
    return doc
