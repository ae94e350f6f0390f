"""Measuring a checkpoint on a labelled split (`uda-seg evaluate`), and the paper's Fig. 5.

    summary = evaluate_checkpoint("runs/IDDA2CamVid_bisenet-r18_fcd/best.pt",
                                  "data/synthetic/camvid", split="test", save_predictions=4)

The model may also be an exported `.onnx` file (`uda-seg export`, `uda-seg deploy`'s
model.onnx): it is run by ONNX Runtime as the node runs it, at its metadata's input size.
Writes `metrics.json` (pixel accuracy, per-class IoU, the headline mIoU over the label
set's headline classes (the paper's: the 11 named classes) and the mIoU over all of them)
and, with `save_predictions` N, `predictions.png`: N rows of image | ground truth |
prediction in the set's colours, like the paper's Fig. 5. Output goes to `out`
(default: beside the checkpoint, in `eval_<split>/`). The measurement itself is
`metrics.evaluate_model`, the same one training validation uses.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from uda_seg_core.checkpoint import checkpoint_config, load_checkpoint
from uda_seg_core.config import DataConfig, Normalisation, input_normalisation
from uda_seg_core.data import eval_split, resolve_format
from uda_seg_core.inference.onnx_backend import OnnxRuntimeBackend
from uda_seg_core.inference.torch_backend import BackendModule
from uda_seg_core.labels import camvid12, ids_to_rgb
from uda_seg_core.metrics import dataset_label_set, evaluate_model, predict_ids
from uda_seg_core.models import build_model_from_checkpoint
from uda_seg_core.reporting import atomic_write_json, prediction_grid
from uda_seg_core.runtime import resolve_device


def checkpoint_eval_split(ckpt: dict, data: str | Path, split: str, fmt: str = "auto", *,
                          limit: int = 0, sequences: Sequence[str] = (),
                          eval_size: Sequence[int] | None = None) -> Dataset:
    """A labelled split prepared as the checkpoint's network expects it: its normalisation
    and its data.eval_size (unless `eval_size` says otherwise)."""
    cfg = checkpoint_config(ckpt)
    return eval_split(cfg.data, data, split, fmt, normalisation=input_normalisation(cfg),
                      limit=limit, sequences=sequences, eval_size=eval_size)


def model_to_measure(path: str | Path) -> tuple[nn.Module, DataConfig, Normalisation]:
    """The network of a checkpoint, or an exported .onnx model served by ONNX Runtime (its
    class ids, as the node gets them), with the data settings it is evaluated with: the
    checkpoint's (normalisation, eval_size, label set), or the ONNX metadata's
    normalisation, input size and label set."""
    if Path(path).suffix.lower() != ".onnx":
        ckpt = load_checkpoint(path)
        cfg = checkpoint_config(ckpt)
        return build_model_from_checkpoint(ckpt, path), cfg.data, input_normalisation(cfg)
    backend = OnnxRuntimeBackend(path, device="cpu")
    data = DataConfig(eval_size=list(backend.input_size or []),
                      label_set=backend.info.label_set or DataConfig().label_set)
    return BackendModule(backend), data, backend.info.normalisation()


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, *, fmt: str = "auto",
                        split: str = "test", sequences: Sequence[str] = (),
                        eval_size: Sequence[int] | None = None, limit: int = 0,
                        device: str = "auto", out: str | Path | None = None,
                        save_predictions: int = 0, progress: bool = True) -> dict:
    """Measure `checkpoint` on a split of `data`; write metrics.json (and predictions.png).

    Returns the summary written to metrics.json, plus 'table' (markdown), 'out' (the
    folder) and 'figure' (the PNG, when drawn)."""
    dev = resolve_device(device)
    model, cfg_data, normalisation = model_to_measure(checkpoint)
    if isinstance(model, BackendModule):
        dev = "cpu"
    dataset = eval_split(cfg_data, data, split, fmt, normalisation=normalisation, limit=limit,
                         sequences=sequences, eval_size=eval_size)
    model.to(dev)
    cm = evaluate_model(model, dataset, dev, num_classes=model.num_classes, progress=progress)
    folder = Path(out) if out else Path(checkpoint).parent / f"eval_{split}"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": str(checkpoint), "data": str(data),
               "format": resolve_format(fmt, data), "split": split,
               "sequences": list(sequences), "images": len(dataset),
               "eval_size": list(cfg_data.eval_size if eval_size is None else eval_size),
               **cm.summary(),
               "confusion_matrix": cm.mat.cpu().tolist()}  # rows: label, columns: prediction
    atomic_write_json(folder / "metrics.json", summary)
    result = {**summary, "table": cm.table(), "out": str(folder)}
    if save_predictions > 0:
        rows = predict_examples(model, dataset, dev, save_predictions, normalisation)
        palette = (dataset_label_set(dataset) or camvid12()).palette_array()
        result["figure"] = str(prediction_grid(
            [(r["image"], ids_to_rgb(r["label"], palette), ids_to_rgb(r["pred"], palette))
             for r in rows],
            ("image", "ground truth", "prediction"), folder / "predictions.png",
            row_names=[r["name"] for r in rows], title=f"{Path(checkpoint).parent.name} - {split}",
            panel_inches=3.0, dpi=120))
    return result


@torch.inference_mode()
def predict_examples(model: nn.Module, dataset: Dataset, device: str | torch.device, n: int,
                     normalisation: Normalisation) -> list[dict]:
    """The first `n` items as {'name', 'image' uint8 RGB, 'label' ids, 'pred' ids}."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for i in range(min(n, len(dataset))):
            item = dataset[i]
            label = item["label"]
            pred = predict_ids(model, item["image"][None].to(device), tuple(label.shape[-2:]))[0]
            image = normalisation.invert(item["image"].float().cpu().numpy())
            rows.append({"name": item["name"], "image": image,
                         "label": label.cpu().numpy(), "pred": pred.cpu().numpy()})
    finally:
        model.train(was_training)
    return rows
