"""Shared by the bag tests: a tiny CamVid split in the real colour-label layout."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.labels import PALETTE


def write_tiny_camvid(root: Path, n: int = 5, height: int = 48, width: int = 64,
                      seed: int = 0, split: str = "test") -> Path:
    """`n` random frames with blocky labels drawn in CamVid colours (incl. Void = Background)."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}_labels").mkdir(parents=True, exist_ok=True)
    # Frame names in CamVid's sequence style; the loader orders them naturally.
    for name in [f"0001TP_{6690 + 30 * i:06d}" for i in range(n)]:
        blocks = rng.integers(0, len(PALETTE), (height // 8, width // 8))
        ids = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
        # Blocky colours with mild noise: compressible like a photo, not like pure noise.
        shade = rng.integers(0, 256, (len(PALETTE), 3))
        noise = rng.integers(-8, 9, (height, width, 3))
        image = np.clip(shade[ids] + noise, 0, 255).astype(np.uint8)
        colour = PALETTE[ids]
        cv2.imwrite(str(root / split / f"{name}.png"), image[..., ::-1])
        cv2.imwrite(str(root / f"{split}_labels" / f"{name}_L.png"), colour[..., ::-1])
    return root
