"""`uda-seg deploy`: from an adapted checkpoint to the fastest model within an accuracy budget.

    uda-seg deploy --checkpoint runs/adapted/best.pt --data ../shared/data/CamVid-SegNet \\
        --out runs/deploy                                 # --max-loss 1.0 mIoU point
    uda-seg deploy --checkpoint C --data data/synthetic --out D --ratios 0.3,0.5 \\
        --finetune-iters 300 --calibration-frames 16 --input-size 360x480

Candidates, every one measured the same way:
- the unpruned network exported to ONNX fp32, and INT8 (static QDQ, calibrated on
  `--calibration-frames` target frames; per-channel and per-tensor weights, both measured
  unless `--per-channel` says which): the reference's own speed-ups;
- for each `--ratios` r, structured channel pruning (`optimize.structured`): r of the
  channels removed, BatchNorm statistics re-estimated on target frames, then
  `--finetune-iters` iterations of distillation from the adapted network on unlabelled
  target frames (fine-tune method 'target-distill': the adapted network's predictions are
  the only target, so the adaptation is kept and neither domain's labels are needed),
  exported fp32 and INT8 like the unpruned one;
- at an `--input-size` below the reference's evaluation size (with `--finetune-iters` > 0),
  the unpruned network after `--finetune-iters` iterations of *resolution distillation*
  (candidates 'r0.00-distilled-*'): on unlabelled target crops, the student sees each crop
  resized by input size / reference size, the adapted network the crop itself, and the
  student's scores, upsampled, are pulled to the adapted network's softmax. A network served
  at half the camera's resolution learns what the adapted one sees at the full one. The
  pruned networks' fine-tunes distil across the same resolutions at such a size.
Each candidate's mIoU is measured on the labelled `--split` (val) of `--data` at the
input size, as the node serves it (frames resized to the input size, class ids resized
back to the label's size, nearest). The reference row is the adapted fp32 network in eager
PyTorch as `uda-seg evaluate` measures it: at the checkpoint's own evaluation size
(data.eval_size; empty: the frames' own size), so an `--input-size` smaller than the
camera's pays for its lost resolution out of the budget instead of hiding it. Every
candidate and the reference are timed interleaved in one run, each at its own input size
(`inference.timing.interleaved`; ONNX Runtime and torch on the same `--threads`).
The fastest candidate (p50) within `--max-loss` mIoU points of the adapted fp32 network
is chosen; a candidate outside the budget, INT8 included, is reported as such and never
chosen. If none is within it (a tiny budget, or an `--input-size` below the reference's
that loses more than the budget on its own), nothing is served: deploy.json and deploy.md
still list every candidate and why, OUT/model.onnx is not written (one left by an earlier
run is removed, so it never disagrees with deploy.json), and the command fails naming the
closest candidate.

Writes OUT/model.onnx (the chosen candidate; metadata: class names, palette,
normalisation, input size, and 'provenance': what it came from and what it measured),
OUT/deploy.json (every candidate, the settings, the machine) and OUT/deploy.md (the
table). Finished work is kept under OUT/work/ with a stamp of the settings it was made
with (`uda_seg_core.stages`): a rerun with the same settings reuses every pruned network,
export, quantisation and evaluation and only times again (timing is never reused: every
figure in one report comes from one interleaved run); a changed setting redoes only
what depends on it. A data folder without the labelled split, or without frames to
calibrate and fine-tune on, is refused before any work.

The package, one job a module, each depending only on those above it:
  plan.py    the request, checked before any work; the networks and candidates it asks for
  work.py    pruning, export, INT8 quantisation and evaluation of each candidate, resumable
  choice.py  every candidate and the reference timed in one interleaved run; the choice
  report.py  deploy.json, deploy.md and OUT/model.onnx with its provenance
  job.py     `deploy`: the whole job, in that order
"""
from __future__ import annotations

from uda_seg_core.optimize.deploy.choice import choose
from uda_seg_core.optimize.deploy.job import deploy
from uda_seg_core.optimize.deploy.plan import (
    DEFAULT_RATIOS,
    PER_CHANNEL_CHOICES,
    Candidate,
    DeployError,
    DeployRequest,
    NothingWithinBudget,
    Plan,
)

__all__ = ["DEFAULT_RATIOS", "PER_CHANNEL_CHOICES", "Candidate", "DeployError", "DeployRequest",
           "NothingWithinBudget", "Plan", "choose", "deploy"]
