"""What deploy writes: deploy.json's document (every candidate, chosen and explained),
deploy.md (the table) and OUT/model.onnx (the chosen file with its provenance)."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from uda_seg_core.optimize.deploy.choice import choose
from uda_seg_core.optimize.deploy.plan import FINETUNE_METHOD, REFERENCE_ID, Plan
from uda_seg_core.optimize.export import write_metadata
from uda_seg_core.reporting import atomic_path, machine_description, markdown_table

DEPLOY_FORMAT = "uda_seg.deploy/1"


def write_model(p: Plan, chosen: dict, reference: dict) -> Path:
    """OUT/model.onnx: the chosen file with its provenance added to the metadata."""
    target = p.out / "model.onnx"
    provenance = {
        "made_by": "uda-seg deploy", "checkpoint": str(Path(p.r.checkpoint).resolve()),
        "checkpoint_sha256": p.ckpt_sha256, "candidate": chosen["id"],
        "pruning_ratio": chosen["ratio"], "distilled": chosen.get("distilled", False),
        "precision": chosen["precision"],
        "per_channel": chosen["per_channel"], "data": str(p.root.resolve()),
        "split": p.r.split, "miou": chosen["miou"], "reference_miou": reference["miou"],
        "reference_input_size": reference["input_size"],
        "loss_points": chosen["loss_points"], "max_loss": p.r.max_loss,
        "p50_ms": chosen["p50_ms"], "threads": p.threads, "input_size": list(p.size),
        "finetune": chosen.get("finetune"), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_path(target) as tmp:
        shutil.copyfile(chosen["file"], tmp)
        write_metadata(tmp, {"provenance": json.dumps(provenance)})
    return target


CANDIDATE_HEADERS = ("candidate", "ratio", "precision", "params (M)", "GMACs", "p50 ms",
                     "p90 ms", "vs eager", "mIoU (%)", "loss (pt)", "chosen or why not")


def markdown(doc: dict) -> str:
    ref = doc["reference"]
    s = doc["settings"]
    lines = [
        "# uda-seg deploy", "", f"`{doc['command']}`", "",
        (f"Adapted checkpoint `{doc['checkpoint']['path']}`; mIoU over the 11 named classes on "
         f"{doc['data']['images']} images of the '{doc['data']['split']}' split of "
         f"`{doc['data']['root']}` at {s['input_size'][0]}x{s['input_size'][1]}; budget "
         f"{s['max_loss']:g} mIoU points below the adapted fp32 network "
         f"({100 * ref['miou']:.2f} % at its own {_size(ref)})."),
        (f"Timed interleaved in one run: {doc['machine']['cpu']}, {doc['threads']} thread(s) "
         f"(torch and ONNX Runtime; ONNX Runtime spinning "
         f"{'on' if doc['machine']['ort_spinning'] else 'off'}), batch 1, up to {s['repeats']} "
         f"repeats after {s['warmup']} warm-up; load average {doc['machine']['loadavg_start']} "
         f"at the start, {doc['machine']['loadavg_end']} at the end."),
        "",
    ]
    rows = [[f"adapted fp32, eager PyTorch at {_size(ref)} (reference)", "0.00", "fp32",
             f"{ref['params'] / 1e6:.2f}", f"{ref['macs'] / 1e9:.2f}", f"{ref['p50_ms']:.1f}",
             f"{ref['p90_ms']:.1f}", "1.00x", f"{100 * ref['miou']:.2f}", "0.00",
             "reference (not an ONNX export)"]]
    for c in doc["candidates"]:
        precision = c["precision"] + ("" if c["per_channel"] is None else
                                      (" per-channel" if c["per_channel"] else " per-tensor"))
        rows.append([f"**{c['id']}**" if c["chosen"] else c["id"], f"{c['ratio']:.2f}",
                     precision, f"{c['params'] / 1e6:.2f}", f"{c['macs'] / 1e9:.2f}",
                     f"{c['p50_ms']:.1f}", f"{c['p90_ms']:.1f}",
                     f"{c['p50_ms'] / ref['p50_ms']:.2f}x", f"{100 * c['miou']:.2f}",
                     f"{c['loss_points']:.2f}", c["reason"]])
    lines.append(markdown_table(CANDIDATE_HEADERS, rows, align="lrl" + "r" * 7 + "l"))
    served = (f"Served: `{doc['model']}` ({doc['chosen']})." if doc["chosen"] else
              f"Served: nothing: {nothing_served(doc)}")
    lines += ["", served + " Work this run: "
              + ", ".join(f"{k} {v}" for k, v in doc["work"].items()) + ".", ""]
    return "\n".join(lines)


def _size(ref: dict) -> str:
    return f"{ref['input_size'][0]}x{ref['input_size'][1]}"


def nothing_served(doc: dict) -> str:
    """Why deploy served no model, naming the closest candidate and what to change."""
    closest = min(doc["candidates"], key=lambda c: c["loss_points"])
    size = doc["settings"]["input_size"]
    return (f"no candidate is within --max-loss {doc['settings']['max_loss']:g} mIoU points "
            f"of the adapted fp32 network at {_size(doc['reference'])} (the closest, "
            f"{closest['id']} at {size[0]}x{size[1]}, loses {closest['loss_points']:.2f}); "
            f"OUT/model.onnx not written. Raise --max-loss, or deploy at a larger "
            f"--input-size; every candidate is in deploy.md.")


def report(p: Plan, reference: dict, timings: dict, dataset_len: int, load_start: str,
           seconds: float) -> dict:
    """deploy.json's document (rows chosen and explained)."""
    rows = []
    for c in p.candidates:
        rows.append({"id": c.id, "ratio": c.ratio, "distilled": c.distilled,
                     "precision": c.precision,
                     "per_channel": c.per_channel, "file": str(c.file), **c.row,
                     **timings[c.id]})
    chosen_id = choose(rows, reference["miou"], p.r.max_loss)
    ref = {"name": "adapted fp32 (eager PyTorch)", "miou": reference["miou"],
           "accuracy": reference["accuracy"], "params": reference["params"],
           "macs": reference["macs"], "input_size": reference["input_size"],
           **timings[REFERENCE_ID]}
    settings = {k: v for k, v in asdict(p.r).items()
                if k not in ("checkpoint", "data", "out", "command", "fresh")}
    settings.update(input_size=list(p.size), ratios=[float(x) for x in p.r.ratios],
                    finetune_method=FINETUNE_METHOD, overrides=list(p.r.overrides))
    return {
        "format": DEPLOY_FORMAT, "command": p.r.command,
        "checkpoint": {"path": str(p.r.checkpoint), "sha256": p.ckpt_sha256},
        "data": {"root": str(p.root), "format": p.fmt, "split": p.r.split,
                 "images": dataset_len},
        "settings": settings, "threads": p.threads,
        "machine": {**machine_description(loadavg_start=load_start),
                    "ort_spinning": os.environ.get("UDA_SEG_ORT_SPIN", "0") == "1"},
        "reference": ref, "candidates": rows, "chosen": chosen_id,
        "model": str(p.out / "model.onnx") if chosen_id else None, "work": dict(p.work_done),
        "seconds": round(seconds, 1),
    }
