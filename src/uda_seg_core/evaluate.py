"""`uda-seg evaluate`: pixel accuracy, per-class IoU and mIoU of a checkpoint on a split.

    uda-seg evaluate --checkpoint runs/IDDA2CamVid_bisenet-r18_fcd/best.pt \\
        --data data/synthetic/camvid --split test --save-predictions 4

Prints the per-class IoU table (markdown) with the headline mIoU over the 11 named
classes, the 12-class mIoU and pixel accuracy; writes `metrics.json` and, with
`--save-predictions N`, `predictions.png`: N rows of image | ground truth | prediction,
like the paper's Fig. 5. Output goes to `--out` (default: beside the checkpoint, in
`eval_<split>/`).

`evaluate_model(model, dataset, device)` is the same measurement as a function: training
validation, the pruning sweep and the rosbag evaluator all call it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from uda_seg_core.metrics import ConfusionMatrix


def _logits_of(output) -> torch.Tensor:
    """Logits from any output mode: the main head of a train-mode tuple, or the tensor."""
    return output[0] if isinstance(output, (tuple, list)) else output


def predict_ids(model: nn.Module, images: torch.Tensor, size: tuple[int, int] | None = None,
                amp: bool = False) -> torch.Tensor:
    """Class ids (N, H, W) for a normalised batch; logits are resized to `size` (the label's)
    when the network's output differs from it."""
    with torch.autocast(device_type=images.device.type, dtype=torch.float16,
                        enabled=amp and images.device.type == "cuda"):
        out = _logits_of(model(images))
    if not out.is_floating_point():  # a model in 'pred' mode already returns ids
        out = out.long()
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return out
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=False)
    return out.argmax(dim=1)


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: Dataset, device: str | torch.device, batch_size: int = 1,
                   num_workers: int = 0, distributed: bool = False, amp: bool = False,
                   channels_last: bool = False, num_classes: int | None = None,
                   progress: bool = False) -> ConfusionMatrix:
    """Confusion matrix of `model` (eval mode) over a labelled `dataset` of transformed items.

    Under torchrun with `distributed=True` each rank measures every world_size-th image
    and the matrices are summed, so every image counts exactly once. The model's
    train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    if num_classes is None:
        num_classes = int(getattr(model, "num_classes", 12))
    cm = ConfusionMatrix(num_classes)
    cm.mat = cm.mat.to(device)  # nccl reduces GPU tensors; an empty shard must match
    if distributed and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        dataset = Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluate", dynamic_ncols=True)
    try:
        for batch in loader:
            if "label" not in batch:
                raise ValueError("evaluate_model needs labelled items; this dataset was opened without labels")
            images = batch["image"].to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = batch["label"].to(device)
            cm.update(predict_ids(model, images, tuple(labels.shape[-2:]), amp), labels)
    finally:
        model.train(was_training)
    if distributed:
        cm.all_reduce()
    return cm


def denormalise(image: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised 3xHxW tensor back to an HxWx3 uint8 RGB image (for figures)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.float().cpu() * std_t + mean_t).clamp(0, 1) * 255
    return rgb.round().byte().permute(1, 2, 0).numpy()


@torch.inference_mode()
def predict_examples(model: nn.Module, dataset: Dataset, device: str | torch.device, n: int,
                     mean, std) -> list[dict]:
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
            rows.append({"name": item["name"], "image": denormalise(item["image"], mean, std),
                         "label": label.cpu().numpy(), "pred": pred.cpu().numpy()})
    finally:
        model.train(was_training)
    return rows


def save_prediction_figure(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """image | ground truth | prediction, one row per example (the paper's Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uda_seg_core.data.labels import ids_to_rgb

    if not rows:
        raise ValueError("no examples to draw")
    h, w = rows[0]["label"].shape
    fig_w = 9.0
    fig, axes = plt.subplots(len(rows), 3, squeeze=False,
                             figsize=(fig_w, fig_w / 3 * h / w * len(rows) + 0.6))
    for r, row in enumerate(rows):
        label = row["label"].copy()
        label[label == 255] = 254  # ignored pixels drawn black, not in a class colour
        panels = (row["image"], ids_to_rgb(label), ids_to_rgb(row["pred"]))
        for c, (panel, name) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
            ax = axes[r][c]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name)
        axes[r][0].set_ylabel(row["name"], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def add_checkpoint_dataset_arguments(parser) -> None:
    """The options every command that measures a checkpoint on a labelled split shares."""
    parser.add_argument("--checkpoint", required=True, help="a .pt written by uda-seg train/adapt")
    parser.add_argument("--data", required=True, help="labelled dataset folder (e.g. data/synthetic/camvid)")
    parser.add_argument("--format", default="auto", choices=("auto", "camvid", "camvid_segnet", "idda"),
                        help="dataset layout (default: auto, read off the folder)")
    parser.add_argument("--split", default="test", help="split to measure: test or val (default: test)")
    parser.add_argument("--sequences", nargs="+", default=(), metavar="SEQ",
                        help="only frames of these sequences (e.g. 0006R0: a drive held out of "
                        "adaptation)")
    parser.add_argument("--eval-size", nargs=2, type=int, metavar=("H", "W"),
                        help="resize images to H W first (default: the checkpoint's data.eval_size)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def add_arguments(parser) -> None:
    add_checkpoint_dataset_arguments(parser)
    parser.add_argument("--save-predictions", type=int, default=0, metavar="N",
                        help="draw N rows of image | ground truth | prediction to predictions.png")
    parser.add_argument("--out", help="output folder (default: <checkpoint dir>/eval_<split>)")


def run(args) -> int:
    from uda_seg_core.config import Config, from_dict
    from uda_seg_core.data import DatasetFormatError, build_dataset, resolve_format
    from uda_seg_core.data.transforms import build_transforms
    from uda_seg_core.train.checkpoint import CheckpointError, load_model
    from uda_seg_core.train.loop import resolve_device

    try:
        device = resolve_device(args.device)
        model, ckpt = load_model(args.checkpoint, map_location="cpu")
        cfg = from_dict(ckpt["config"]) if "config" in ckpt else Config()
        data_cfg = cfg.data
        data_cfg.mean, data_cfg.std = list(ckpt.get("mean", data_cfg.mean)), list(ckpt.get("std", data_cfg.std))
        if args.eval_size:
            data_cfg.eval_size = list(args.eval_size)
        transform = build_transforms(cfg.augmentation, data_cfg, train=False)
        dataset = build_dataset(args.format, args.data, args.split, transform=transform,
                                limit=args.limit, sequences=args.sequences)
    except (CheckpointError, DatasetFormatError, ValueError) as exc:
        print(f"uda-seg evaluate: {exc}", file=sys.stderr)
        return 2
    model.to(device)
    cm = evaluate_model(model, dataset, device, num_classes=model.num_classes, progress=True)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{args.split}"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": str(args.checkpoint), "data": str(args.data),
               "format": resolve_format(args.format, args.data), "split": args.split,
               "sequences": list(args.sequences), "images": len(dataset),
               "eval_size": list(data_cfg.eval_size), **cm.summary(),
               "confusion_matrix": cm.mat.cpu().tolist()}  # rows: label, columns: prediction
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.checkpoint} on {args.data} ({summary['format']}, {args.split}, "
          f"{len(dataset)} images)\n")
    print(cm.table())
    print(f"\nmetrics: {out / 'metrics.json'}")
    if args.save_predictions > 0:
        rows = predict_examples(model, dataset, device, args.save_predictions, data_cfg.mean, data_cfg.std)
        fig = save_prediction_figure(rows, out / "predictions.png",
                                     title=f"{Path(args.checkpoint).parent.name} - {args.split}")
        print(f"figure: {fig}")
    return 0
