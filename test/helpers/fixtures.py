"""Tiny data and configs for the tests: one CamVid writer, one config builder.

Data is written in the real on-disk formats, from tables typed here (not the loaders'), so
the loaders are checked against the formats, not against themselves:

- `write_tiny_camvid(root, {split: names}, ...)`: CamVid in miniature, in the colour layout
  (`<split>/<name>.png`, `<split>_labels/<name>_L.png` and `class_dict.csv`) or the SegNet
  layout (`<split>/<name>.png`, `<split>annot/<name>.png` with ids 0-11). What a frame
  holds is a `frames` maker, `(rng, h, w) -> (image, label)`: random labels (the default:
  any of CamVid's 32 colours, or ids 0-11), `blocks` (8x8 blocks of the 12 classes,
  photo-like shading), `bands(colours, noise)` (horizontal bands) or `street(cast)` (a
  street-like scene, the tiny training domain's target);
- `write_idda(root, stems)`: IDDA (rgb/*.jpg, RGBA labels with the id in red);
- `write_domains(root)`: the tiny two-domain pair the training tests run on (IDDA-format
  source, CamVid-format target with train / val / test), 48x64 street-like scenes;
- `tiny_overrides(root, idda, camvid, **extra)` / `tiny_config(...)`: the settings of a
  fast, deterministic CPU run (BiSeNet-R18, no pretrained weights, 48x64 crops, two epochs
  of batches of 2, an 8-wide discriminator), as `uda-seg` overrides or as a Config; `extra`
  maps dotted keys to values (`**{"adapt.lambda_adv": 0.0}`).

Files go through Pillow, not the loaders' OpenCV, except the IDDA half of
`write_domains` (OpenCV's JPEG encoder decides the pixels the `trained_model` fixture
learns from).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from uda_seg_core.config import Config, load_config
from uda_seg_core.labels import PALETTE

# ----------------------------------------------------------------------------- tables

# CamVid's class_dict.csv, as published (name, r, g, b).
CAMVID_CLASS_DICT = [
    ("Animal", 64, 128, 64), ("Archway", 192, 0, 128), ("Bicyclist", 0, 128, 192),
    ("Bridge", 0, 128, 64), ("Building", 128, 0, 0), ("Car", 64, 0, 128),
    ("CartLuggagePram", 64, 0, 192), ("Child", 192, 128, 64), ("Column_Pole", 192, 192, 128),
    ("Fence", 64, 64, 128), ("LaneMkgsDriv", 128, 0, 192), ("LaneMkgsNonDriv", 192, 0, 64),
    ("Misc_Text", 128, 128, 64), ("MotorcycleScooter", 192, 0, 192), ("OtherMoving", 128, 64, 64),
    ("ParkingBlock", 64, 192, 128), ("Pedestrian", 64, 64, 0), ("Road", 128, 64, 128),
    ("RoadShoulder", 128, 128, 192), ("Sidewalk", 0, 0, 192), ("SignSymbol", 192, 128, 128),
    ("Sky", 128, 128, 128), ("SUVPickupTruck", 64, 128, 192), ("TrafficCone", 0, 0, 64),
    ("TrafficLight", 0, 64, 64), ("Train", 192, 64, 128), ("Tree", 128, 128, 0),
    ("Truck_Bus", 192, 128, 192), ("Tunnel", 64, 0, 64), ("VegetationMisc", 192, 192, 0),
    ("Void", 0, 0, 0), ("Wall", 64, 192, 0),
]
# The paper's 12 classes (DESIGN.md): the 11 named CamVid classes keep their identity.
CLASSES = ["Bicyclist", "Building", "Car", "Column_Pole", "Fence", "Pedestrian", "Road",
           "Sidewalk", "SignSymbol", "Sky", "Tree", "Background"]
BACKGROUND = 11
SIZE = (48, 64)  # H, W of the tiny training domains
# class id -> IDDA id (red channel): Building 1, Car 10, Road 7, Sidewalk 8, Sky 20, Tree 9
CLASS_TO_IDDA = {1: 1, 2: 10, 6: 7, 7: 8, 9: 20, 10: 9, 11: 0}

Frames = Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]


def expected_camvid_class(name: str) -> int:
    return CLASSES.index(name) if name in CLASSES[:BACKGROUND] else BACKGROUND


# ----------------------------------------------------------------------------- files

def save_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8), "RGB").save(path)


def save_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(values, np.uint8), "L").save(path)


def random_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_class_dict(root: Path, extra_column: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    header = "name,r,g,b" + (",class_11" if extra_column else "")
    rows = [f"{n},{r},{g},{b}" + (f",{int(n in CLASSES)}" if extra_column else "")
            for n, r, g, b in CAMVID_CLASS_DICT]
    (root / "class_dict.csv").write_text("\n".join([header, *rows]) + "\n")


# ----------------------------------------------------------------------------- CamVid frames

def camvid_names(n: int) -> list[str]:
    """Frame names in CamVid's sequence style (the loader orders them naturally)."""
    return [f"0001TP_{6690 + 30 * i:06d}" for i in range(n)]


def random_colours(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Any of CamVid's 32 colours per pixel (most are Background), a random image."""
    colours = np.array([c[1:] for c in CAMVID_CLASS_DICT], np.uint8)
    label = colours[rng.integers(0, len(colours), (h, w))]
    return random_image(rng, h, w), label


def random_ids(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """SegNet ids 0-11 per pixel, a random image."""
    label = rng.integers(0, 12, (h, w)).astype(np.uint8)
    return random_image(rng, h, w), label


def blocks(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 blocks of the 12 classes in their palette colours (Background = Void), each class
    a shade with mild noise: compressible like a photo, not like pure noise."""
    ids = np.kron(rng.integers(0, len(PALETTE), (h // 8, w // 8)), np.ones((8, 8), np.int64))
    shade = rng.integers(0, 256, (len(PALETTE), 3))
    noise = rng.integers(-8, 9, (h, w, 3))
    return np.clip(shade[ids] + noise, 0, 255).astype(np.uint8), PALETTE[ids]


def bands(colours: Sequence[tuple[int, int, int]], noise: int = 0) -> Frames:
    """Horizontal bands of `colours` (RGB), top to bottom; the image is the label plus
    uniform noise in [-noise, noise) (none: the label itself)."""
    def frame(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        label = np.zeros((h, w, 3), np.uint8)
        for rows, colour in zip(np.array_split(np.arange(h), len(colours)), colours):
            label[rows] = colour
        if not noise:
            return label.copy(), label
        shifted = label.astype(np.int16) + rng.integers(-noise, noise, label.shape)
        return np.clip(shifted, 0, 255).astype(np.uint8), label

    return frame


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


def street(cast: tuple[int, int, int] = (0, 0, 0)) -> Frames:
    """A street-like `scene` in palette colours with a colour `cast` and noise."""
    def frame(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        ids = scene(rng, (h, w))
        return render(ids, rng, cast), PALETTE[ids]

    return frame


# ----------------------------------------------------------------------------- writers

def write_tiny_camvid(root: Path, splits: dict[str, list[str]], *,
                      size: tuple[int, int] = (12, 16), seed: int | np.random.Generator = 0,
                      frames: Frames | None = None, labels: dict[str, np.ndarray] | None = None,
                      layout: str = "colour") -> Path:
    """CamVid in miniature: `splits` maps a split to its frame names; `layout` is 'colour'
    (960x720 layout: `<split>_labels/<name>_L.png` colours, and class_dict.csv) or
    'segnet' (480x360 layout: `<split>annot/<name>.png` ids 0-11). Frames are `size` (H, W)
    and come from `frames` (default: random labels of the layout); `labels` fixes the
    label of a frame by name (its image is random). `seed` may be a Generator to share."""
    if layout not in ("colour", "segnet"):
        raise ValueError(f"layout must be 'colour' or 'segnet', not {layout!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    frames = frames or (random_colours if layout == "colour" else random_ids)
    if layout == "colour":
        write_class_dict(root)
    for split, names in splits.items():
        for name in names:
            label = (labels or {}).get(name)
            if label is None:
                image, label = frames(rng, *size)
            else:
                image = random_image(rng, *label.shape[:2])
            save_rgb(root / split / f"{name}.png", image)
            if layout == "colour":
                save_rgb(root / f"{split}_labels" / f"{name}_L.png", label)
            else:
                save_grey(root / f"{split}annot" / f"{name}.png", label)
    return root


def write_idda(root: Path, stems: list[str], h: int = 12, w: int = 16, seed: int = 0,
               ids: dict[str, np.ndarray] | None = None, alpha: bool = True) -> Path:
    """IDDA layout: rgb/<stem>.jpg, labels/<stem>.png with the id in red (G, B, A arbitrary)."""
    rng = np.random.default_rng(seed)
    for stem in stems:
        red = (ids or {}).get(stem)
        if red is None:
            red = rng.integers(0, 27, (h, w)).astype(np.uint8)
        (root / "rgb").mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_image(rng, *red.shape),
                        "RGB").save(root / "rgb" / f"{stem}.jpg", quality=90)
        other = rng.integers(0, 256, red.shape + (3 if alpha else 2,), dtype=np.uint8)
        pixels = np.concatenate([red[..., None], other], axis=-1)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "RGBA" if alpha else "RGB").save(root / "labels" / f"{stem}.png")
    return root


def write_domains(root: Path, n: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """root/idda (n street scenes) and root/camvid (n per split, another colour cast): the
    tiny two-domain pair, 48x64; returns both roots."""
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
    splits = {split: [f"real_{split}_{i:03d}" for i in range(n)]
              for split in ("train", "val", "test")}
    write_tiny_camvid(camvid, splits, size=SIZE, seed=rng, frames=street((-30, 10, 30)))
    return idda, camvid


# ----------------------------------------------------------------------------- configs

def tiny_overrides(root: Path | None = None, idda: Path | None = None,
                   camvid: Path | None = None, **extra) -> list[str]:
    """`uda-seg` overrides for a fast, deterministic CPU run (on the tiny domains when
    given; runs under root/runs); `extra` (dotted key -> value) wins."""
    values = {}
    if idda is not None:
        values["data.source_root"] = str(idda)
    if camvid is not None:
        values["data.target_root"] = str(camvid)
    values.update({
        "data.crop_size": "[48,64]", "data.num_workers": 0,
        "model.backbone": "resnet18", "model.pretrained": "''",
        "train.batch_size": 2, "train.epochs": 2, "train.device": "cpu",
        "train.checkpoint_every": 2,
    })
    if root is not None:
        values["train.out_dir"] = str(root / "runs")
    values["adapt.d_width"] = 8
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def tiny_config(root: Path | None = None, idda: Path | None = None, camvid: Path | None = None,
                **extra) -> Config:
    """The Config of `tiny_overrides` (defaults, then those overrides)."""
    return load_config(None, tiny_overrides(root, idda, camvid, **extra))
