"""Writing frames in the two real on-disk formats: the sim domain as IDDA (rgb/<stem>.jpg,
labels/<stem>.png RGBA with the IDDA id in red, classes_info.json), the real domain as
CamVid colour labels (<split>/<name>.png, <split>_labels/<name>_L.png, class_dict.csv).
Scene parts map to each dataset's own ids and colours here, including the ones that map
to Background (IDDA terrain, wall, guardrail, statics, tlight; CamVid LaneMkgsDriv,
LaneMkgsNonDriv, Wall, TrafficLight, VegetationMisc, Void)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.data.synthetic.scene import PART_NAMES
from uda_seg_core.labels import (
    BACKGROUND,
    CAMVID_COLOURS,
    IDDA_ID_NAMES,
    IDDA_TO_CLASS,
    NUM_IDDA_IDS,
    ids_to_rgb,
)

PART_IDDA_ID = {  # the red channel of an IDDA label (names as in classes_info.json)
    "sky": 20, "building": 1, "road": 7, "lane": 6, "crosswalk": 6, "sidewalk": 8,
    "terrain": 19, "wall": 11, "fence": 2, "guardrail": 14, "tree": 9, "pole": 5, "sign": 12,
    "tlight": 13, "car": 10, "pedestrian": 4, "bicyclist": 16, "static": 23,
}
PART_CAMVID = {  # CamVid colour names; guardrails and bins are unlabelled (Void) in CamVid
    "sky": "Sky", "building": "Building", "road": "Road", "lane": "LaneMkgsDriv",
    "crosswalk": "LaneMkgsNonDriv", "sidewalk": "Sidewalk", "terrain": "VegetationMisc",
    "wall": "Wall", "fence": "Fence", "guardrail": "Void", "tree": "Tree",
    "pole": "Column_Pole", "sign": "SignSymbol", "tlight": "TrafficLight", "car": "Car",
    "pedestrian": "Pedestrian", "bicyclist": "Bicyclist", "static": "Void",
}
PART_TO_IDDA = np.array([PART_IDDA_ID[p] for p in PART_NAMES], np.uint8)
PART_TO_CAMVID_RGB = np.array([CAMVID_COLOURS[PART_CAMVID[p]] for p in PART_NAMES], np.uint8)

JPEG_QUALITY = 92
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1,  # fast
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def _imwrite(path: Path, image: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_idda_frame(root: Path, stem: str, rgb: np.ndarray, parts: np.ndarray) -> None:
    _imwrite(root / "rgb" / f"{stem}.jpg", rgb[..., ::-1],
             [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    red = PART_TO_IDDA[parts]
    bgra = np.zeros(parts.shape + (4,), np.uint8)
    bgra[..., 2] = red
    bgra[..., 3] = 255
    _imwrite(root / "labels" / f"{stem}.png", bgra, PNG_PARAMS)


def write_camvid_frame(root: Path, split: str, name: str, rgb: np.ndarray,
                       parts: np.ndarray) -> None:
    _imwrite(root / split / f"{name}.png", rgb[..., ::-1], PNG_PARAMS)
    _imwrite(root / f"{split}_labels" / f"{name}_L.png", PART_TO_CAMVID_RGB[parts][..., ::-1],
             PNG_PARAMS)


def write_classes_info(path: Path) -> None:
    """classes_info.json as IDDA ships it: ids, names, the id -> class mapping, a palette."""
    label2camvid = [[i, int(IDDA_TO_CLASS[i]) if IDDA_TO_CLASS[i] != BACKGROUND else 255]
                    for i in range(NUM_IDDA_IDS)]
    palette = ids_to_rgb(IDDA_TO_CLASS[:NUM_IDDA_IDS]).tolist()
    path.write_text(json.dumps({"classes": NUM_IDDA_IDS, "label2camvid": label2camvid,
                                "label": list(IDDA_ID_NAMES), "palette": palette}, indent=1) + "\n")


def write_class_dict(path: Path) -> None:
    """class_dict.csv with all 32 CamVid colours."""
    lines = ["name,r,g,b"] + [f"{name},{r},{g},{b}"
                              for name, (r, g, b) in CAMVID_COLOURS.items()]
    path.write_text("\n".join(lines) + "\n")
