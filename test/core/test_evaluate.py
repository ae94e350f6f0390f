"""`uda-seg evaluate` (evaluate.py): outputs are complete, a corrupt checkpoint is named, an
exported model is evaluated at its own input size (evaluate_model: test_metrics.py)."""
from __future__ import annotations

import json

import cv2

from helpers.fixtures import write_domains
from uda_seg_core.cli import main


def test_evaluate_command_prints_writes_json_and_figure(tmp_path, capsys, tiny_checkpoint):
    _, camvid = write_domains(tmp_path, n=3)
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(camvid),
                 "--split", "val", "--device", "cpu", "--save-predictions", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| **mIoU (named classes)** |" in printed and "| Sky |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["images"] == 3
    assert {"accuracy", "miou", "miou_12", "per_class_iou"} <= metrics.keys()
    assert metrics["pixels"] == 3 * 48 * 64
    figure = cv2.imread(str(out / "predictions.png"))
    assert figure is not None and figure.shape[1] > figure.shape[0]  # 3 columns, 2 short rows


def test_evaluate_command_names_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--checkpoint", str(bad), "--data", str(tmp_path)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_an_exported_onnx_model_is_evaluated_as_the_checkpoint_it_came_from(trained_model,
                                                                            tmp_path):
    """`uda-seg evaluate --checkpoint model.onnx` runs ONNX Runtime at the file's input size
    (32x48 here, the frames being 48x64) with its normalisation, and scores the same as the
    checkpoint evaluated at that size. Mutant: the ONNX metadata's input size ignored (the
    frame's own size used)."""
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(trained_model.checkpoint), "--format", "onnx",
                 "--size", "32x48", "--out", str(onnx_path)]) == 0
    results = {}
    for name, path, extra in (("pt", trained_model.checkpoint, ["--eval-size", "32", "48"]),
                              ("onnx", onnx_path, [])):
        out = tmp_path / name
        assert main(["evaluate", "--checkpoint", str(path), "--data", str(trained_model.camvid),
                     "--split", "test", "--device", "cpu", "--out", str(out), *extra]) == 0
        results[name] = json.loads((out / "metrics.json").read_text())
    assert results["onnx"]["images"] == results["pt"]["images"] == 4
    assert results["onnx"]["eval_size"] == [32, 48]
    assert results["pt"]["miou"] > 0.2
    assert abs(results["onnx"]["miou"] - results["pt"]["miou"]) < 0.01
