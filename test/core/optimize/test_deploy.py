"""`uda-seg deploy`: every candidate measured, the budget obeyed, finished work reused, and the
served model.onnx loads with no flags; on the trained tiny BiSeNet-R18 at 48x64.

    .venv/bin/pytest test/core/optimize/test_deploy.py -q
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from uda_seg_core.cli import main
from uda_seg_core.evaluate import evaluate_checkpoint
from uda_seg_core.inference import Segmenter
from uda_seg_core.optimize.deploy import choose
from uda_seg_core.optimize.export import read_metadata

TINY = ["--input-size", "48x64", "--ratios", "0.5", "--finetune-iters", "2", "--bn-batches", "2",
        "--calibration-frames", "2", "--repeats", "3", "--warmup", "1", "--case-budget", "0",
        "--device", "cpu", "--threads", "1"]
WORK = ("pruned", "exported", "quantised", "evaluated")


@pytest.fixture(scope="module")
def deployed(trained_model, tmp_path_factory):
    """Three runs into one folder: a request, the same again, then one more fine-tune
    iteration. Returns (out, [their deploy.json documents]); model.onnx is the second's
    choice until the third run, whose choice it then is."""
    out = tmp_path_factory.mktemp("deploy") / "out"
    argv = ["deploy", "--checkpoint", str(trained_model.checkpoint), "--data",
            str(trained_model.camvid), "--out", str(out), "--max-loss", "0", *TINY]
    docs = []
    for extra in ([], [], ["--finetune-iters", "3"]):
        assert main(argv + extra) == 0
        docs.append(json.loads((out / "deploy.json").read_text()))
    return out, docs


def test_deploy_measures_every_candidate_and_writes_the_three_files(deployed):
    """Mutant: a candidate left out of the timing or the evaluation (no p50 / no mIoU), or
    a pruned candidate that is not smaller."""
    out, (doc, *_) = deployed
    assert (out / "model.onnx").is_file() and (out / "deploy.md").is_file()
    ids = [c["id"] for c in doc["candidates"]]
    assert ids == ["r0.00-fp32", "r0.00-int8-pc", "r0.00-int8-pt",
                   "r0.50-fp32", "r0.50-int8-pc", "r0.50-int8-pt"]
    for c in doc["candidates"]:
        assert c["p50_ms"] > 0 and c["p90_ms"] >= c["p50_ms"] and c["samples"] >= 1
        assert 0.0 <= c["miou"] <= 1.0 and c["params"] > 0 and c["macs"] > 0
    by_id = {c["id"]: c for c in doc["candidates"]}
    assert by_id["r0.50-fp32"]["params"] < 0.7 * by_id["r0.00-fp32"]["params"]
    assert by_id["r0.50-fp32"]["finetune"]["method"] == "target-distill"
    assert by_id["r0.50-fp32"]["finetune"]["iters"] == 2
    assert doc["reference"]["p50_ms"] > 0 and doc["reference"]["miou"] > 0.1
    md = (out / "deploy.md").read_text()
    assert all(i in md for i in ids) and "reference" in md


def test_the_chosen_model_obeys_the_budget_and_int8_outside_it_is_reported(deployed):
    """A budget of 0 points: the INT8 exports of the trained model lose a little (checked
    first: the case this test needs), so none may be chosen, and each says why.
    Mutant: the fastest candidate chosen regardless of the budget; the loss computed with
    the wrong sign."""
    _, (doc, *_) = deployed
    int8_losses = [c["loss_points"] for c in doc["candidates"] if c["precision"] == "int8"]
    assert max(int8_losses) > 0, "the constructed case needs an INT8 candidate that loses"
    chosen = [c for c in doc["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["id"] == doc["chosen"]
    assert chosen[0]["loss_points"] <= 0 + 1e-9
    for c in doc["candidates"]:
        if c["loss_points"] > 1e-9:
            assert not c["chosen"] and c["reason"].startswith("outside the budget")


def test_a_rerun_reuses_every_finished_candidate_and_redoes_what_a_setting_changed(deployed):
    """Mutant: stage stamps that never match (everything redone); the fine-tune iterations
    left out of a pruned candidate's key (a changed fine-tune silently reused)."""
    _, (first, second, third) = deployed
    assert first["work"]["pruned"] == 1 and first["work"]["exported"] == 2
    assert first["work"]["quantised"] == 4 and first["work"]["evaluated"] == 7
    assert {k: second["work"][k] for k in WORK} == dict.fromkeys(WORK, 0)
    assert second["work"]["reused"] == 1 + 2 + 4 + 7
    assert [c["miou"] for c in second["candidates"]] == [c["miou"] for c in first["candidates"]]
    # one more fine-tune iteration: the pruned network and its three candidates are redone,
    # the unpruned exports and their evaluations (and the reference's) are not
    assert {k: third["work"][k] for k in WORK} == {"pruned": 1, "exported": 1, "quantised": 2,
                                                   "evaluated": 3}
    assert third["work"]["reused"] == 1 + 2 + 4
    assert {c["id"]: c.get("finetune", {}).get("iters") for c in third["candidates"]}[
        "r0.50-fp32"] == 3


def test_the_node_independent_segmenter_serves_model_onnx_with_no_flags(deployed):
    """Mutant: model.onnx written without its metadata (input size, classes, provenance)."""
    out, docs = deployed
    meta = read_metadata(out / "model.onnx")
    assert meta["input_size"] == [48, 64] and len(meta["class_names"]) == 12
    assert meta["provenance"]["candidate"] == docs[-1]["chosen"]
    assert meta["provenance"]["max_loss"] == 0
    seg = Segmenter.from_checkpoint(out / "model.onnx")
    assert seg.backend.input_size == (48, 64)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = seg.segment(frame)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8 and mask.max() < 12


def test_choose_never_picks_a_faster_candidate_outside_the_budget():
    """Mutant: the fastest row chosen whatever its loss; a row served when none fits."""
    rows = [{"id": "fp32", "ratio": 0.0, "precision": "fp32", "miou": 0.400, "p50_ms": 90.0},
            {"id": "int8", "ratio": 0.0, "precision": "int8", "miou": 0.380, "p50_ms": 30.0},
            {"id": "p50", "ratio": 0.5, "precision": "fp32", "miou": 0.396, "p50_ms": 50.0}]
    assert choose(rows, reference_miou=0.400, max_loss=1.0) == "p50"
    assert rows[1]["reason"].startswith("outside the budget") and not rows[1]["chosen"]
    assert rows[0]["reason"].startswith("within the budget but slower")
    assert choose(rows, reference_miou=0.400, max_loss=3.0) == "int8"
    assert choose(rows, reference_miou=0.410, max_loss=0.5) is None
    assert not any(r["chosen"] for r in rows)
    assert all(r["reason"].startswith("outside the budget") for r in rows)


def test_a_smaller_input_size_pays_for_its_lost_resolution_out_of_the_budget(
        trained_model, tmp_path, capsys):
    """Deployed at half the frames' size, the reference is still the adapted network as
    `uda-seg evaluate` measures it, at its own size, and each candidate's loss is counted
    from there. Mutant: the reference evaluated (and timed) at the reduced input size, which
    hides the resolution a smaller input loses and lets it through any budget."""
    out = tmp_path / "out"
    argv = ["deploy", "--checkpoint", str(trained_model.checkpoint), "--data",
            str(trained_model.camvid), "--out", str(out), "--max-loss", "100", *TINY]
    argv[argv.index("48x64")] = "24x32"
    argv[argv.index("--ratios") + 1] = "0"
    assert main([*argv, "--per-channel", "off"]) == 0
    doc = json.loads((out / "deploy.json").read_text())
    ref = doc["reference"]
    evaluated = evaluate_checkpoint(trained_model.checkpoint, trained_model.camvid,
                                    split="val", device="cpu", progress=False)
    assert ref["input_size"] == [48, 64] and doc["settings"]["input_size"] == [24, 32]
    assert ref["miou"] == pytest.approx(evaluated["miou"], abs=1e-9)
    fp32 = next(c for c in doc["candidates"] if c["id"] == "r0.00-fp32")
    assert fp32["loss_points"] == pytest.approx(100 * (ref["miou"] - fp32["miou"]))
    assert fp32["miou"] != pytest.approx(ref["miou"], abs=1e-6), "half size must change mIoU"
    assert ref["macs"] > 3 * fp32["macs"]
    assert "48x64 (reference)" in (out / "deploy.md").read_text()
    # Below the reference's size the unpruned network is also distilled across resolutions
    # (mutant: no such candidate, or its fine-tune at the student's own size, scale 1).
    assert [c["id"] for c in doc["candidates"]] == [
        "r0.00-fp32", "r0.00-int8-pt", "r0.00-distilled-fp32", "r0.00-distilled-int8-pt"]
    distilled = doc["candidates"][2]
    assert distilled["distilled"] and distilled["ratio"] == 0.0
    assert distilled["finetune"]["student_scale"] == [0.5, 0.5]
    assert distilled["finetune"]["iters"] == 2 and distilled["bn_batches"] == 0
    assert distilled["params"] == fp32["params"] and distilled["macs"] == fp32["macs"]
    # served with no flags at the size it was chosen at (mutant: Segmenter's 360x480 default)
    assert Segmenter.from_checkpoint(out / "model.onnx").input_size == (24, 32)

    # The same candidates under a budget none of them meets at this size: nothing is
    # served, and the model.onnx of the run above is gone (mutant: the unpruned fp32 export
    # served as a 'fallback' although it loses more than the budget here).
    closest = min(c["loss_points"] for c in doc["candidates"])
    assert closest > 0.01, "the constructed case needs every half-size candidate to lose"
    budget = f"{closest / 2:.4f}"
    assert main([*argv[:argv.index("--max-loss") + 1], budget,
                 *argv[argv.index("--max-loss") + 2:], "--per-channel", "off"]) == 2
    assert "no candidate is within --max-loss" in capsys.readouterr().err
    doc = json.loads((out / "deploy.json").read_text())
    assert doc["chosen"] is None and doc["model"] is None and not (out / "model.onnx").exists()
    assert not any(c["chosen"] for c in doc["candidates"])
    assert all(c["reason"].startswith("outside the budget") for c in doc["candidates"])
    assert "Served: nothing" in (out / "deploy.md").read_text()


def test_data_without_a_val_split_is_refused_before_any_work(trained_model, tmp_path, capsys):
    """Mutant: the missing split found only after pruning and exporting (or never)."""
    data = tmp_path / "camvid"
    shutil.copytree(trained_model.camvid, data)
    shutil.rmtree(data / "val")
    shutil.rmtree(data / "val_labels")
    out = tmp_path / "out"
    argv = ["deploy", "--checkpoint", str(trained_model.checkpoint), "--data", str(data),
            "--out", str(out), *TINY]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no labelled 'val' split" in err and "train, test" in err
    assert not out.exists()
