"""Tiny two-domain datasets and configs for the training tests.

Writes a few 48x64 street-like scenes in the real on-disk formats (IDDA: rgb/*.jpg +
RGBA labels with the id in the red channel; CamVid: split folders + *_L.png colour
labels), so the tests exercise the real loaders in well under a second.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.config import load_config
from uda_seg_core.labels import PALETTE

SIZE = (48, 64)  # H, W
# class id -> IDDA id (red channel): Building 1, Car 10, Road 7, Sidewalk 8, Sky 20, Tree 9
CLASS_TO_IDDA = {1: 1, 2: 10, 6: 7, 7: 8, 9: 20, 10: 9, 11: 0}


def scene(rng: np.random.Generator, size=SIZE) -> np.ndarray:
    """Class ids: sky, buildings/trees, sidewalk, road, and a car."""
    h, w = size
    ids = np.full((h, w), 9, np.uint8)  # sky
    horizon = int(rng.integers(h // 4, h // 2))
    split = int(rng.integers(w // 4, 3 * w // 4))
    ids[horizon:, :split] = 1  # building
    ids[horizon:, split:] = 10  # tree
    ids[int(h * 0.6):] = 7  # sidewalk
    ids[int(h * 0.7):] = 6  # road
    x = int(rng.integers(0, w - 16))
    ids[int(h * 0.65):int(h * 0.85), x:x + 14] = 2  # car
    ids[:2, :2] = 11  # a little background
    return ids


def render(ids: np.ndarray, rng: np.random.Generator, cast: tuple[int, int, int]) -> np.ndarray:
    base = PALETTE[ids].astype(np.float32) + np.array(cast, np.float32)
    noise = rng.normal(0, 12, ids.shape + (3,))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_domains(root: Path, n: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """root/idda (n images) and root/camvid (n per split); returns both roots."""
    rng = np.random.default_rng(seed)
    idda, camvid = root / "idda", root / "camvid"
    (idda / "rgb").mkdir(parents=True)
    (idda / "labels").mkdir()
    for i in range(n):
        ids = scene(rng)
        red = np.vectorize(CLASS_TO_IDDA.get)(ids).astype(np.uint8)
        rgba = np.stack([np.zeros_like(red), np.zeros_like(red), red, np.full_like(red, 255)],
                        -1)  # BGRA
        cv2.imwrite(str(idda / "labels" / f"sim_{i:03d}.png"), rgba)
        cv2.imwrite(str(idda / "rgb" / f"sim_{i:03d}.jpg"), render(ids, rng, (0, 0, 0))[..., ::-1])
    for split in ("train", "val", "test"):
        (camvid / split).mkdir(parents=True)
        (camvid / f"{split}_labels").mkdir()
        for i in range(n):
            ids = scene(rng)
            name = f"real_{split}_{i:03d}"
            cv2.imwrite(str(camvid / split / f"{name}.png"),
                        render(ids, rng, (-30, 10, 30))[..., ::-1])
            cv2.imwrite(str(camvid / f"{split}_labels" / f"{name}_L.png"), PALETTE[ids][..., ::-1])
    return idda, camvid


def tiny_overrides(root: Path, idda: Path, camvid: Path, **extra) -> list[str]:
    """Overrides for a fast, deterministic CPU run on the tiny domains."""
    values = {
        "data.source_root": str(idda), "data.target_root": str(camvid),
        "data.crop_size": "[48,64]", "data.num_workers": 0,
        "model.backbone": "resnet18", "model.pretrained": "''",
        "train.batch_size": 2, "train.epochs": 2, "train.device": "cpu",
        "train.checkpoint_every": 2, "train.out_dir": str(root / "runs"),
        "adapt.d_width": 8,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def tiny_config(root: Path, idda: Path, camvid: Path, **extra):
    return load_config(None, tiny_overrides(root, idda, camvid, **extra))
