"""`uda-seg model`: the shipped recipe trained on a tiny CamVid (48x64 frames, 2 iterations
of EfficientNet-Lite0 on its installed ImageNet weights) and deployed into one model.onnx;
a stopped training resumed, a second run reusing the training and the deploy, and bad
--data refused before anything is written.

    .venv/bin/pytest test/core/study/test_model.py -q
"""
from __future__ import annotations

import json

from helpers.fixtures import camvid_names, write_tiny_camvid
from uda_seg_core.cli import main
from uda_seg_core.config import dump_config
from uda_seg_core.optimize.export import read_metadata
from uda_seg_core.study.model import ModelSettings, training_config

SIZE = (48, 64)
TINY = ["data.crop_size=[48,64]", "data.num_workers=0", "augmentation.scales=[1.0]",
        "train.batch_size=2", "train.max_iters=2", "train.val_every=2",
        "train.checkpoint_every=1", "train.warmup_iters=0", "train.device=cpu"]


def tiny_camvid(root):
    names = camvid_names(6)
    return write_tiny_camvid(root, {"train": names[:4], "val": names[4:]}, size=SIZE,
                             layout="segnet")


def test_model_resumes_a_stopped_training_serves_model_onnx_and_a_rerun_reuses_both(
        tmp_path, capsys):
    """Mutant: a finished training run again (run_state ignored), a stopped one restarted
    from iteration 0, or model.onnx / model.json not written."""
    camvid, out = tiny_camvid(tmp_path / "camvid"), tmp_path / "model"
    args = ["model", "--data", str(camvid), "--out", str(out), "--input-size", "48x64",
            "--threads", "1", *TINY]
    # a training stopped after 1 of its 2 iterations, with the settings `uda-seg model` uses
    cfg = training_config(ModelSettings(str(camvid), out=str(out), input_size=SIZE,
                                        overrides=TINY))
    dump_config(cfg, tmp_path / "stopped.yaml")
    assert main(["train", "--config", str(tmp_path / "stopped.yaml"), "--stop-at", "1"]) == 0
    capsys.readouterr()

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"train (resumed from last.pt): uda-seg train --resume {out / 'train'}" in printed
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["iteration"] == 2 and [h["iteration"] for h in metrics["history"]] == [2]
    meta = read_metadata(out / "model.onnx")
    assert meta["input_size"] == [48, 64] and len(meta["class_names"]) == 12
    assert meta["class_names"][0] == "Bicyclist" and len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["backbone"] == "efficientnet_lite0"
    doc = json.loads((out / "model.json").read_text())
    served = doc["served"]
    assert served["candidate"] in ("r0.00-fp32", "r0.00-int8-pc") and served["threads"] == 1
    assert served["p50_ms"] > 0 and 0 <= served["val_miou"] <= 1
    assert 0 <= doc["trained"]["val_miou"] <= 1 and doc["seconds"]["train"] > 0
    deploy = json.loads((out / "deploy" / "deploy.json").read_text())
    assert [c["id"] for c in deploy["candidates"]] == ["r0.00-fp32", "r0.00-int8-pc"]
    assert (out / "model.onnx").read_bytes() == (out / "deploy" / "model.onnx").read_bytes()
    line = f"ros2 launch uda_seg_ros segment.launch.py model_path:={out / 'model.onnx'}"
    assert line in printed and doc["serve"]["launch"] == line
    assert f"segmentation_node --ros-args -p model_path:={out / 'model.onnx'}" in printed

    best = (out / "train" / "best.pt").stat().st_mtime_ns
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train: finished earlier, skipped" in printed
    assert (out / "train" / "best.pt").stat().st_mtime_ns == best
    again = json.loads((out / "model.json").read_text())
    assert again["train"]["state"] == "done" and again["seconds"]["train"] == 0
    work = again["deploy"]["work"]
    assert work["exported"] == work["quantised"] == work["evaluated"] == 0 and work["reused"] > 0
    assert read_metadata(out / "model.onnx")["input_size"] == [48, 64]


def test_missing_or_unusable_data_is_refused_before_anything_is_written(tmp_path, capsys):
    """Mutant: the data checked only by the training process (after OUT is made)."""
    out = tmp_path / "model"
    missing = tmp_path / "nowhere"
    assert main(["model", "--data", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err
    no_val = write_tiny_camvid(tmp_path / "no_val", {"train": camvid_names(2)}, size=SIZE,
                               layout="segnet")
    assert main(["model", "--data", str(no_val), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(no_val) in err and "val" in err
    (tmp_path / "empty").mkdir()
    assert main(["model", "--data", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err
    assert not out.exists()
