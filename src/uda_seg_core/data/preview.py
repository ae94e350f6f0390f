"""A quick look at a dataset: a PNG grid of images beside their colour labels.

    uda-seg preview data/synthetic                      # both domains of a make-synthetic output
    uda-seg preview data/CamVid --split test --n 6 --out camvid.png
    uda-seg preview data/IDDA --format idda
    uda-seg preview data/lanes --label-set lanes.yaml   # a plain folder, in the set's colours

The format is detected from the folder (make-synthetic output, IDDA, CamVid colour or
SegNet layout) unless --format says it. Rows are samples spread evenly over the split,
so every sequence shows up; labels are drawn in the label set's colours (by default the
paper's 12-class palette).

`channel_stats(dataset, n)` measures the appearance of a domain (per-channel mean and
std, saturation, gradient energy, high-frequency energy) so two domains can be compared.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.data import DatasetFormatError, build_dataset, detect_format, resolve_format
from uda_seg_core.labels import ids_to_rgb

TILE_HEIGHT = 180
CAMVID_SPLITS = ("train", "val", "test")


def spread(n_total: int, n: int) -> list[int]:
    """n indices spread evenly over range(n_total), first and last included."""
    if n_total <= 0 or n <= 0:
        return []
    n = min(n, n_total)
    return sorted({round(i) for i in np.linspace(0, n_total - 1, n)})


def channel_stats(dataset, n: int = 32) -> dict:
    """Appearance statistics of up to n images spread over a dataset (0-255 scale).

    mean/std: per RGB channel over all pixels; saturation: mean HSV saturation;
    gradient: mean Sobel magnitude of the grey image (edges and texture); high_freq: std
    of grey minus its sigma-1 blur (grain and noise).
    """
    sums = np.zeros(3)
    sq = np.zeros(3)
    pixels = 0
    sat = grad = high = 0.0
    indices = spread(len(dataset), n)
    for i in indices:
        image = dataset.load(i)[0] if hasattr(dataset, "load") else dataset[i]["image"]
        x = image.reshape(-1, 3).astype(np.float64)
        sums += x.sum(0)
        sq += (x * x).sum(0)
        pixels += len(x)
        sat += float(cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1].mean())
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8
        grad += float(np.sqrt(gx * gx + gy * gy).mean())
        high += float((grey - cv2.GaussianBlur(grey, (0, 0), 1.0)).std())
    k = max(len(indices), 1)
    mean = sums / max(pixels, 1)
    std = np.sqrt(np.maximum(sq / max(pixels, 1) - mean * mean, 0))
    return {"images": len(indices), "mean": [round(float(v), 2) for v in mean],
            "std": [round(float(v), 2) for v in std], "saturation": round(sat / k, 2),
            "gradient": round(grad / k, 3), "high_freq": round(high / k, 3)}


def _tile(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interp)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def preview_columns(dataset, n: int, height: int = TILE_HEIGHT) -> np.ndarray:
    """Rows of image | colour label for n samples spread over `dataset` (RGB uint8)."""
    rows = []
    for i in spread(len(dataset), n):
        image, label = dataset.load(i)
        img = _caption(_tile(image, height), dataset.names[i])
        colours = ids_to_rgb(label, dataset.label_set.palette_array()) if label is not None \
            else None
        lab = _tile(colours, height) if colours is not None else np.zeros_like(img)
        rows.append(np.concatenate([img, np.full((height, 2, 3), 255, np.uint8), lab], axis=1))
    if not rows:
        raise DatasetFormatError("nothing to preview: the dataset is empty")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def open_for_preview(root: Path, fmt: str, split: list[str] | None, label_set=None):
    if fmt in ("idda", "folder"):
        return build_dataset(fmt, root, split or ["all"], label_set=label_set)
    if split is None:
        label_dir = "{}_labels" if fmt == "camvid" else "{}annot"
        split = [s for s in CAMVID_SPLITS
                 if (root / s).is_dir() and (root / label_dir.format(s)).is_dir()]
    return build_dataset(fmt, root, split, label_set=label_set)


def make_preview(root: str | Path, out: str | Path, fmt: str = "auto",
                 split: list[str] | None = None, n: int = 8, label_set=None) -> Path:
    """Write the grid PNG for a dataset root or a make-synthetic output; returns its path.
    `label_set`: the classes the labels map to (`labels.resolve_label_set`; camvid12)."""
    root, out = Path(root), Path(out)
    if fmt == "auto":
        fmt = "synthetic" if detect_format(root) == "synthetic" else resolve_format("auto", root)
    if fmt == "synthetic":
        parts = [preview_columns(open_for_preview(root / "idda", "idda", None), n),
                 preview_columns(open_for_preview(root / "camvid", "camvid", None), n)]
        h = max(p.shape[0] for p in parts)
        parts = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), constant_values=255)
                 for p in parts]
        grid = np.concatenate([parts[0], np.full((h, 6, 3), 255, np.uint8), parts[1]], axis=1)
    else:
        grid = preview_columns(open_for_preview(root, fmt, split, label_set), n)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid[..., ::-1]):
        raise OSError(f"could not write {out}")
    return out
