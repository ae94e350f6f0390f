"""evaluate_model and `uda-seg evaluate`: a perfect predictor scores 1, outputs are complete."""
from __future__ import annotations

import json

import cv2
import torch
import torch.nn.functional as F
from torch import nn

from helpers.fixtures import write_domains
from uda_seg_core.cli import main
from uda_seg_core.labels import NUM_CLASSES
from uda_seg_core.metrics import evaluate_model


class LabelledImages(torch.utils.data.Dataset):
    """Items whose image carries its own label in channel 0, every class present."""

    def __init__(self, n: int = 3, size=(12, 16)):
        g = torch.Generator().manual_seed(0)
        self.labels = [torch.randint(0, NUM_CLASSES, size, generator=g) for _ in range(n)]
        self.labels[0].view(-1)[:NUM_CLASSES] = torch.arange(NUM_CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        label = self.labels[i].clone()
        label[0, -1] = 255  # an ignored pixel, which no prediction may be charged for
        image = self.labels[i].float().expand(3, -1, -1).clone()
        return {"image": image, "label": label, "name": f"item{i}"}


class Oracle(nn.Module):
    """Logits that put all mass on the class written in the image; optionally shifted
    by one class (always wrong) or produced at half resolution."""

    num_classes = NUM_CLASSES

    def __init__(self, shift: int = 0, half: bool = False):
        super().__init__()
        self.shift, self.half = shift, half

    def forward(self, x):
        ids = (x[:, 0].long() + self.shift) % NUM_CLASSES
        logits = F.one_hot(ids, NUM_CLASSES).permute(0, 3, 1, 2).float()
        return logits[..., ::2, ::2] if self.half else logits


def test_perfect_predictor_scores_one():
    cm = evaluate_model(Oracle(), LabelledImages(), "cpu")
    summary = cm.summary()
    assert summary["miou"] == 1.0 and summary["miou_12"] == 1.0 and summary["accuracy"] == 1.0
    assert summary["pixels"] == 3 * 12 * 16 - 3  # ignored pixels are not counted
    assert cm.summary()["per_class_iou"]["Background"] == 1.0


def test_wrong_predictor_scores_zero_and_batches_agree():
    assert evaluate_model(Oracle(shift=1), LabelledImages(), "cpu").summary()["miou"] == 0.0
    one = evaluate_model(Oracle(), LabelledImages(4), "cpu", batch_size=1).mat
    two = evaluate_model(Oracle(), LabelledImages(4), "cpu", batch_size=2).mat
    assert torch.equal(one, two)


def test_low_resolution_logits_are_resized_to_the_label():
    cm = evaluate_model(Oracle(half=True), LabelledImages(), "cpu")
    assert cm.summary()["pixels"] == 3 * 12 * 16 - 3
    assert 0 < cm.summary()["accuracy"] < 1  # upsampled guesses: right in places, not everywhere


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
