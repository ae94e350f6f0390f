"""Tiny datasets in the real on-disk formats, written with Pillow (not the loaders' OpenCV)
and from tables typed here, so the loaders are checked against the formats, not themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

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


def expected_camvid_class(name: str) -> int:
    return CLASSES.index(name) if name in CLASSES[:BACKGROUND] else BACKGROUND


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


def write_camvid_colour(root: Path, splits: dict[str, list[str]], h: int = 12, w: int = 16,
                        seed: int = 0, labels: dict[str, np.ndarray] | None = None) -> Path:
    """CamVid 960x720 layout in miniature: <split>/<name>.png, <split>_labels/<name>_L.png."""
    rng = np.random.default_rng(seed)
    write_class_dict(root)
    colours = np.array([c[1:] for c in CAMVID_CLASS_DICT], np.uint8)
    for split, names in splits.items():
        for name in names:
            label = (labels or {}).get(name)
            if label is None:
                label = colours[rng.integers(0, len(colours), (h, w))]
            save_rgb(root / split / f"{name}.png", random_image(rng, *label.shape[:2]))
            save_rgb(root / f"{split}_labels" / f"{name}_L.png", label)
    return root


def write_camvid_segnet(root: Path, splits: dict[str, list[str]], h: int = 12, w: int = 16,
                        seed: int = 0, labels: dict[str, np.ndarray] | None = None) -> Path:
    """SegNet 480x360 layout in miniature: <split>/<name>.png, <split>annot/<name>.png (0-11)."""
    rng = np.random.default_rng(seed)
    for split, names in splits.items():
        for name in names:
            label = (labels or {}).get(name)
            if label is None:
                label = rng.integers(0, 12, (h, w)).astype(np.uint8)
            save_rgb(root / split / f"{name}.png", random_image(rng, *label.shape))
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
