"""The scene model both domains share: scene parts (the generator's own label space), a
street in road coordinates (s along the road, d across it, y up; metres), the things
along it, and the pinhole camera that drives along it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PART_NAMES = ("sky", "building", "road", "lane", "crosswalk", "sidewalk", "terrain", "wall",
              "fence", "guardrail", "tree", "pole", "sign", "tlight", "car", "pedestrian",
              "bicyclist", "static")
PART = {name: i for i, name in enumerate(PART_NAMES)}
GROUND_PARTS = ("road", "lane", "crosswalk", "sidewalk", "terrain")
NEAR, FAR = 1.5, 95.0  # metres: what is drawn in front of the camera


@dataclass
class Camera:
    f: float  # focal length, px
    cx: float
    horizon: float  # image row of the horizon, px
    height: float  # m above the road
    lateral: float  # d of the camera, m
    curve: float  # road curvature: lateral offset c * dz^2 at depth dz

    def project(self, dz, d, y):
        x = d - self.lateral + self.curve * dz * dz
        return self.cx + self.f * x / dz, self.horizon + self.f * (self.height - y) / dz


@dataclass
class Thing:
    kind: str
    s: float  # nearest point along the road, m
    d: float  # lateral position, m (negative = left)
    length: float = 0.0  # extent along the road
    speed: float = 0.0  # m/s along the road
    p: dict = field(default_factory=dict)


@dataclass
class Street:
    road_half: float
    lanes: int
    sidewalk: tuple[float, float]  # widths, left and right (0 = none)
    verge: tuple[float, float]  # grass beyond the sidewalk
    curve: float
    drive_side: int  # +1 right-hand traffic, -1 left-hand
    edge_lines: bool
    dashed_centre: bool
    crossings: list[float]
    colours: dict
    backdrop: list[Thing]
    actors: list[Thing]


def shaded(rgb, k: float):
    """A colour scaled by k, clipped at 255."""
    return tuple(min(255.0, c * k) for c in rgb)


def jittered(rng, rgb, amount: float = 18.0):
    """A colour with each channel moved by up to +-amount, clipped to 0-255."""
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in rgb)
