"""The preview grid of a dataset (data/preview.py)."""
from __future__ import annotations

import cv2

from helpers.fixtures import write_tiny_camvid
from uda_seg_core.data.preview import TILE_HEIGHT, make_preview


def test_preview_detects_a_camvid_root(tmp_path):
    write_tiny_camvid(tmp_path / "cv", {"train": ["a", "b", "c"], "test": ["d"]}, size=(24, 32))
    grid = cv2.imread(str(make_preview(tmp_path / "cv", tmp_path / "p.png", n=3)))
    assert grid.shape[0] == 3 * (TILE_HEIGHT + 2)
