"""The synthetic two-domain default: procedural street scenes in two appearances.

    uda-seg make-synthetic --out data/synthetic [--seed 0] [--size 240x320]
                           [--num-source 200] [--num-target 200]

Writes, with no special case needed to read them back (`build_dataset`):
  OUT/idda/    the "sim" source domain in the IDDA layout: rgb/<stem>.jpg, labels/<stem>.png
               (RGBA, IDDA id in red), classes_info.json. Flat CARLA-like shading, sharp
               edges, saturated colours, clean blue skies; right-hand traffic; frames of
               --size (H x W), stems like Town03_ClearNoon_audi_000120.
  OUT/camvid/  the "real" target domain in the CamVid colour layout: train/ val/ test/
               <name>.png, <split>_labels/<name>_L.png, class_dict.csv (all 32 colours).
               Surface textures, lens blur, sensor noise, a colour cast per sequence,
               vignetting, mostly overcast skies, left-hand traffic (Cambridge), and one
               darker, grainier dusk sequence (0001TP). Frames are 4:3 with about the pixel
               count of --size (240x320 stays 240x320); names follow CamVid's sequences
               (0001TP_006690, 0006R0_f00930, 0016E5_00390, Seq05VD_f00000), one labelled
               frame every 30 video frames, each sequence split 60/20/20 into train/val/test.
  OUT/summary.json  sizes, counts, and the appearance statistics of both domains.

Both domains come from one scene model (a street seen in perspective from a car: road
with lane markings and crossings, kerbs, sidewalks, verges, buildings with windows,
walls, fences, guardrails, trees, lamp posts, signs, traffic lights, bins, parked and
moving cars, pedestrians, bicyclists), so the class layout statistics match while the
appearance shift is global, as between CARLA renders and a real camera. Labels use ids
and colours that map to Background too (IDDA terrain, wall, guardrail, statics, tlight;
CamVid LaneMkgsDriv, LaneMkgsNonDriv, Wall, TrafficLight, VegetationMisc, Void), and
lane markings are Road in IDDA but Background in CamVid, as in the real datasets.

Same seed -> same bytes. Numbers measured on this data are not CamVid numbers.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from uda_seg_core.data import build_dataset
from uda_seg_core.data.preview import channel_stats
from uda_seg_core.labels import (
    BACKGROUND,
    CAMVID_COLOURS,
    IDDA_ID_NAMES,
    IDDA_TO_CLASS,
    NUM_IDDA_IDS,
    ids_to_rgb,
)

# ---------------------------------------------------------------------------------------
# The generator's own label space: scene parts, and what each dataset calls them.
PART_NAMES = ("sky", "building", "road", "lane", "crosswalk", "sidewalk", "terrain", "wall",
              "fence", "guardrail", "tree", "pole", "sign", "tlight", "car", "pedestrian",
              "bicyclist", "static")
PART = {name: i for i, name in enumerate(PART_NAMES)}
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
GROUND_PARTS = ("road", "lane", "crosswalk", "sidewalk", "terrain")

CAMVID_SEQUENCES = (  # (prefix, frame format, first frame, dusk)
    ("0001TP", "{:06d}", 6690, True),
    ("0006R0", "f{:05d}", 930, False),
    ("0016E5", "{:05d}", 390, False),
    ("Seq05VD", "f{:05d}", 0, False),
)
FRAME_STEP = 30  # CamVid labels one frame per second of 30 fps video
IDDA_TOWNS = tuple(f"Town{i:02d}" for i in (1, 2, 3, 4, 5, 6, 7))
IDDA_WEATHER = ("ClearNoon", "CloudyNoon", "ClearSunset")
IDDA_CARS = {"audi": 1.45, "mustang": 1.25, "jeep": 1.75, "volkswagen": 1.55}  # camera height, m
SOURCE_SEQUENCE_LEN = 5  # frames per street: many short scenarios, like IDDA's 105
SPLIT_FRACTIONS = (("train", 0.6), ("val", 0.2), ("test", 0.2))
NEAR, FAR = 1.5, 95.0  # metres: what is drawn in front of the camera
JPEG_QUALITY = 92
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]  # fast


def camvid_size_for(size: tuple[int, int]) -> tuple[int, int]:
    """A 4:3 frame with about the pixel count of `size` (H, W); multiples of 8."""
    h = max(24, round(math.sqrt(size[0] * size[1] * 3 / 4) / 24) * 24)
    return h, h * 4 // 3


# ---------------------------------------------------------------------------------------
# Scene model: a straight or gently curving street in road coordinates (s along the road,
# d across it, y up), seen by a pinhole camera that drives along it.
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


class Canvas:
    """Draws material ids into one int32 map; materials carry colour, part and emission."""

    SHIFT = 4  # sub-pixel bits for OpenCV's fill functions

    def __init__(self, h: int, w: int, sky_rgb):
        self.h, self.w = h, w
        self.ids = np.zeros((h, w), np.int32)
        self.rgb: list = [sky_rgb]
        self.part: list[int] = [PART["sky"]]
        self.emit: list[float] = [0.0]

    def material(self, rgb, part: str, emit: float = 0.0) -> int:
        self.rgb.append(rgb)
        self.part.append(PART[part])
        self.emit.append(emit)
        return len(self.rgb) - 1

    def _fixed(self, pts) -> np.ndarray:
        return np.rint(np.asarray(pts, np.float64) * (1 << self.SHIFT)).astype(np.int32)

    def _point(self, xy) -> tuple[int, int]:
        return round(xy[0] * (1 << self.SHIFT)), round(xy[1] * (1 << self.SHIFT))

    def polys(self, polys, mid: int) -> None:
        """Fill polygons: a list of point lists, or one (N, K, 2) array of N K-gons."""
        if len(polys):
            cv2.fillPoly(self.ids, list(self._fixed(polys)) if isinstance(polys, np.ndarray)
                         else [self._fixed(p) for p in polys], (mid,), cv2.LINE_8, self.SHIFT)

    def convex(self, pts, mid: int) -> None:
        pts = np.asarray(pts, np.float32)
        hull = cv2.convexHull(pts).reshape(-1, 2)
        cv2.fillConvexPoly(self.ids, self._fixed(hull), (mid,), cv2.LINE_8, self.SHIFT)

    def ellipse(self, centre, axes, mid: int, thickness: float = -1) -> None:
        a = tuple(max(1, v) for v in self._point(axes))
        t = -1 if thickness < 0 else max(1, round(thickness))
        cv2.ellipse(self.ids, self._point(centre), a, 0, 0, 360, (mid,), t, cv2.LINE_8, self.SHIFT)

    def line(self, p0, p1, thickness: float, mid: int) -> None:
        cv2.line(self.ids, self._point(p0), self._point(p1), (mid,), max(1, round(thickness)),
                 cv2.LINE_8, self.SHIFT)

    def luts(self):
        return (np.asarray(self.rgb, np.float32), np.asarray(self.part, np.uint8),
                np.asarray(self.emit, np.float32))


def _shade(rgb, k: float):
    return tuple(min(255.0, c * k) for c in rgb)


def _jitter(rng, rgb, amount: float = 18.0):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in rgb)


FACADES = ((196, 180, 150), (170, 160, 150), (150, 80, 60), (210, 205, 195), (120, 110, 100),
           (180, 120, 90), (140, 140, 145), (225, 215, 170))
CAR_PAINT = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (20, 50, 120), (120, 125, 130),
             (235, 235, 235), (60, 80, 60), (170, 140, 60))
CLOTHES = ((40, 40, 60), (150, 30, 30), (30, 60, 120), (200, 200, 190), (60, 60, 60),
           (120, 90, 50), (30, 100, 60), (200, 150, 40))
SKIN = ((230, 190, 160), (190, 140, 110), (120, 80, 60))


# ---------------------------------------------------------------------------------------
# Street layout: one random street per sequence, long enough for all its frames.
def make_street(rng: np.random.Generator, length: float, drive_side: int) -> Street:
    lanes = int(rng.choice([2, 2, 2, 3, 4]))
    lane_w = rng.uniform(3.0, 3.6)
    road_half = lanes * lane_w / 2
    sidewalk = tuple(float(rng.choice([0.0, rng.uniform(2.0, 4.5)], p=[0.12, 0.88])) for _ in range(2))
    verge = tuple(float(rng.choice([0.0, rng.uniform(1.0, 5.0)], p=[0.6, 0.4])) if sw else
                  float(rng.uniform(2.0, 6.0)) for sw in sidewalk)
    urban = rng.random() < 0.6
    colours = {
        "road": _jitter(rng, (92, 92, 96), 14), "sidewalk": _jitter(rng, (165, 160, 152), 16),
        "terrain": _jitter(rng, (105, 125, 70), 18), "lane": (225, 225, 220),
    }
    street = Street(road_half, lanes, sidewalk, verge, float(rng.uniform(-1.2e-3, 1.2e-3)), drive_side,
                    bool(rng.random() < 0.6), bool(rng.random() < 0.7), [], colours, [], [])
    end = length + FAR
    s = rng.uniform(20, 60)
    while s < end:
        street.crossings.append(s)
        s += rng.uniform(60, 160)
    for side in (-1, 1):
        _populate_side(rng, street, side, end, urban)
    _populate_road(rng, street, end)
    return street


def _outer(street: Street, side: int) -> float:
    """|d| of the outer edge of the sidewalk on a side."""
    return street.road_half + street.sidewalk[(side + 1) // 2]


def _populate_side(rng, street: Street, side: int, end: float, urban: bool) -> None:
    k = (side + 1) // 2
    sw, verge = street.sidewalk[k], street.verge[k]
    outer = _outer(street, side)
    building_line = outer + verge
    s = rng.uniform(-30, 0)
    while s < end:  # buildings, with gaps
        length = rng.uniform(8, 30)
        height = rng.uniform(8, 24) if urban else rng.uniform(5, 11)
        street.backdrop.append(Thing("building", s, side * (building_line + rng.uniform(0, 2.5)), length, p={
            "height": height, "depth": rng.uniform(8, 14), "colour": _jitter(rng, FACADES[rng.integers(len(FACADES))]),
            "floor": rng.uniform(2.8, 3.4), "win_every": rng.uniform(2.4, 4.0),
            "glass": _jitter(rng, (60, 70, 85), 15), "lit": rng.random()}))
        s += length + (rng.uniform(3, 14) if rng.random() < 0.35 else rng.uniform(0, 0.5))
    s = rng.uniform(-20, 20)
    while s < end:  # walls, fences, guardrails along the sidewalk's outer edge or the road
        kind = str(rng.choice(["fence", "wall", "guardrail"], p=[0.5, 0.3, 0.2] if sw else [0.2, 0.2, 0.6]))
        length = rng.uniform(6, 35)
        d = side * (street.road_half + 0.3 if kind == "guardrail" and not sw else outer + 0.05)
        colour = {"fence": (120, 110, 95), "wall": (175, 170, 160), "guardrail": (170, 175, 180)}[kind]
        street.backdrop.append(Thing(kind, s, d, length, p={
            "height": {"fence": rng.uniform(1.0, 2.0), "wall": rng.uniform(1.0, 2.6), "guardrail": 0.8}[kind],
            "colour": _jitter(rng, colour, 20), "post_every": rng.uniform(1.5, 2.5)}))
        s += length + rng.uniform(10, 45)
    s = rng.uniform(0, 10)
    while s < end:  # trees on the sidewalk or the verge
        if rng.random() < 0.65:
            d = outer + verge / 2 if verge and rng.random() < 0.5 else street.road_half + min(1.0, sw / 2) + 0.3
            street.actors.append(Thing("tree", s, side * d, p={
                "trunk_h": rng.uniform(1.8, 3.5), "trunk_r": rng.uniform(0.12, 0.25), "crown": rng.uniform(1.4, 3.2),
                "green": _jitter(rng, (60, 105, 45), 22), "bark": _jitter(rng, (90, 70, 50), 12),
                "blobs": rng.uniform(-1, 1, size=(4, 3)).tolist()}))
        s += rng.uniform(6, 16)
    s = rng.uniform(0, 25)
    while s < end:  # lamp posts at the kerb
        street.actors.append(Thing("lamp", s, side * (street.road_half + 0.35), p={
            "height": rng.uniform(6.0, 9.0), "arm": rng.uniform(0.8, 2.0), "colour": _jitter(rng, (110, 112, 115), 25)}))
        s += rng.uniform(20, 34)
    s = rng.uniform(0, 20)
    while s < end:  # signs
        if rng.random() < 0.6:
            street.actors.append(Thing("sign", s, side * (street.road_half + 0.45), p={
                "height": rng.uniform(2.0, 2.8), "shape": str(rng.choice(["circle", "triangle", "square", "rect"])),
                "scheme": int(rng.integers(4)), "size": rng.uniform(0.6, 0.9)}))
        s += rng.uniform(12, 30)
    s = rng.uniform(2, 30)
    while s < end and sw:  # bins and bollards on the sidewalk
        street.actors.append(Thing("static", s, side * (street.road_half + rng.uniform(0.3, sw)), p={
            "w": rng.uniform(0.3, 0.7), "h": rng.uniform(0.6, 1.1), "colour": _jitter(rng, (60, 75, 60), 30)}))
        s += rng.uniform(10, 40)
    s = rng.uniform(0, 8)
    while s < end and sw:  # pedestrians on the sidewalk, alone or in small groups
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            street.actors.append(_pedestrian(rng, s + rng.uniform(-1, 1),
                                             side * (street.road_half + rng.uniform(0.4, sw))))
        s += rng.uniform(5, 18)
    for c in street.crossings:  # traffic lights at crossings
        if rng.random() < 0.7:
            street.actors.append(Thing("tlight", c - 1.0, side * (street.road_half + 0.5), p={
                "height": rng.uniform(2.6, 3.4), "lit": int(rng.integers(3))}))
    if sw and rng.random() < 0.5:  # a parked bicycle, side view
        street.actors.append(_bicyclist(rng, rng.uniform(0, end), side * (street.road_half + sw * 0.7),
                                        "side", rider=False))


def _pedestrian(rng, s: float, d: float, speed: float = 0.0) -> Thing:
    return Thing("pedestrian", s, d, speed=speed, p={
        "height": rng.uniform(1.55, 1.9), "top": _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))]),
        "legs": _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))]), "skin": SKIN[rng.integers(len(SKIN))],
        "stride": rng.uniform(0.0, 0.25), "bag": rng.random() < 0.3})


def _bicyclist(rng, s: float, d: float, view: str, rider: bool = True, speed: float = 0.0) -> Thing:
    return Thing("bicyclist", s, d, speed=speed, p={
        "view": view, "rider": rider, "facing": int(rng.choice([-1, 1])),
        "frame": _jitter(rng, CAR_PAINT[rng.integers(len(CAR_PAINT))]),
        "top": _jitter(rng, CLOTHES[rng.integers(len(CLOTHES))]), "legs": _jitter(rng, (40, 40, 50)),
        "skin": SKIN[rng.integers(len(SKIN))]})


def _car(rng, s: float, d: float, facing: int, speed: float) -> Thing:
    length = rng.uniform(3.9, 4.9)
    return Thing("car", s, d, length, speed, p={
        "width": rng.uniform(1.65, 1.95), "height": rng.uniform(1.35, 1.7), "facing": facing,
        "paint": _jitter(rng, CAR_PAINT[rng.integers(len(CAR_PAINT))], 12), "van": rng.random() < 0.15})


def _populate_road(rng, street: Street, end: float) -> None:
    half = street.road_half
    for side in (-1, 1):  # parked cars along the kerb, never in the camera's lane
        if rng.random() < 0.6 and (side != street.drive_side or street.lanes >= 3):
            s = rng.uniform(-5, 5)
            while s < end:
                if rng.random() < 0.5:
                    street.actors.append(_car(rng, s, side * (half - 1.1), int(rng.choice([-1, 1])), 0.0))
                s += rng.uniform(5.5, 8.0)
    lane_w = 2 * half / street.lanes
    for lane in range(street.lanes):  # traffic: own direction on drive_side, oncoming opposite
        centre = -half + (lane + 0.5) * lane_w
        facing = 1 if np.sign(centre) == street.drive_side else -1
        s = rng.uniform(5, 30)
        while s < end:
            speed = rng.uniform(5, 11) if facing > 0 else -rng.uniform(6, 12)
            street.actors.append(_car(rng, s, centre + rng.uniform(-0.3, 0.3), facing, speed))
            s += rng.uniform(14, 55)
    s = rng.uniform(5, 25)
    while s < end:  # bicyclists riding along the kerb on the driving side, seen from behind
        d = street.drive_side * (half - rng.uniform(0.5, 0.9))
        street.actors.append(_bicyclist(rng, s, d, "rear", speed=rng.uniform(3, 6)))
        s += rng.uniform(18, 40)
    for c in street.crossings:  # people and bicycles on the crossings
        for _ in range(int(rng.integers(0, 4))):
            street.actors.append(_pedestrian(rng, c + rng.uniform(0.5, 3.5), rng.uniform(-half, half)))
        if rng.random() < 0.6:
            street.actors.append(_bicyclist(rng, c + 2.0, rng.uniform(-half, half), "side"))


# ---------------------------------------------------------------------------------------
# Drawing one frame
def draw_ground(cv: Canvas, cam: Camera, street: Street, s_cam: float, mats: dict):
    """Per-pixel road/markings/kerb/sidewalk/verge below the horizon; returns world (s, d)."""
    top = max(0, math.floor(cam.horizon + 0.5))
    if top >= cv.h:
        return None
    v = np.arange(top, cv.h, dtype=np.float32)[:, None] + 0.5
    z = cam.f * cam.height / np.maximum(v - cam.horizon, 1e-3)  # depth of each row, (R, 1)
    u = np.arange(cv.w, dtype=np.float32)[None, :] + 0.5
    d = (u - cam.cx) * (z / cam.f) + (cam.lateral - cam.curve * z * z)
    s = s_cam + z
    ad = np.abs(d)
    half = street.road_half
    sw = np.where(d < 0, street.sidewalk[0], street.sidewalk[1])
    ids = np.full(d.shape, mats["terrain"], np.int32)
    pav = ad < half + sw
    ids[pav] = mats["sidewalk"]
    joints = pav & ((np.mod(s, 0.9) < 0.05) | (np.mod(d, 0.9) < 0.05))
    ids[joints] = mats["joint"]
    ids[pav & (ad < half + 0.2)] = mats["kerb"]
    road = ad < half
    ids[road] = mats["road"]
    lane_w = 2 * half / street.lanes
    marks = np.zeros(d.shape, bool)
    for k in range(1, street.lanes):
        b = -half + k * lane_w
        stripe = np.abs(d - b) < 0.08
        centre = abs(b) < 1e-6
        if not centre or street.dashed_centre:
            stripe &= np.mod(s, 9.0) < 3.0
        marks |= stripe
    if street.edge_lines:
        marks |= road & (np.abs(ad - (half - 0.3)) < 0.07)
    ids[marks & road] = mats["lane"]
    for c in street.crossings:
        zebra = road & (s >= c) & (s < c + 4.0) & (np.mod(d, 1.0) < 0.5) & (ad < half - 0.4)
        ids[zebra] = mats["crosswalk"]
    cv.ids[top:] = ids
    return top, s, d


def draw_building(cv: Canvas, cam: Camera, t: Thing, s_cam: float, shade: dict) -> None:
    p = t.p
    side = 1 if t.d > 0 else -1
    d_in, d_out = t.d, t.d + side * p["depth"]
    s1, s2 = max(t.s, s_cam + NEAR), min(t.s + t.length, s_cam + FAR * 1.5)
    if s2 <= s1:
        return
    h = p["height"]
    side_mat = cv.material(_shade(p["colour"], shade["side"]), "building")
    front_mat = cv.material(_shade(p["colour"], shade["front"]), "building")
    n = max(1, math.ceil((s2 - s1) / 5.0))
    edges = np.linspace(s1, s2, n + 1) - s_cam
    quads = []
    for a, b in itertools.pairwise(edges):
        ua, va0 = cam.project(a, d_in, 0.0)
        _, va1 = cam.project(a, d_in, h)
        ub, vb0 = cam.project(b, d_in, 0.0)
        _, vb1 = cam.project(b, d_in, h)
        quads.append([(ua, va0), (ub, vb0), (ub, vb1), (ua, va1)])
    cv.polys(quads, side_mat)
    if t.s >= s_cam + NEAR:  # the end wall facing the camera
        dz = t.s - s_cam
        pts = [cam.project(dz, d_in, 0.0), cam.project(dz, d_out, 0.0),
               cam.project(dz, d_out, h), cam.project(dz, d_in, h)]
        cv.polys([pts], front_mat)
    if s1 - s_cam > 60:  # windows would be smaller than a pixel
        return
    glass = cv.material(p["glass"], "building")
    lit = cv.material(_shade(p["glass"], 1.15), "building", emit=1.0)  # glows only at dusk
    floors = np.arange(1.0, h - 1.5, p["floor"])
    cols = np.arange(t.s + 1.0, t.s + t.length - 1.5, p["win_every"])
    cols = cols[(cols >= s1) & (cols + 1.2 <= s2)]
    if len(floors) == 0 or len(cols) == 0:
        return
    zz0 = (cols - s_cam)[None, :, None]
    zz1 = zz0 + 1.2
    yy = floors[:, None, None] + np.array([0.0, 1.4])[None, None, :]
    u0, v0 = cam.project(zz0, d_in, yy)
    u1, v1 = cam.project(zz1, d_in, yy)
    u0, u1 = np.broadcast_to(u0, v0.shape), np.broadcast_to(u1, v1.shape)
    corners = np.stack([np.stack([u0[..., 0], v0[..., 0]], -1), np.stack([u1[..., 0], v1[..., 0]], -1),
                        np.stack([u1[..., 1], v1[..., 1]], -1), np.stack([u0[..., 1], v0[..., 1]], -1)], -2)
    corners = corners.reshape(-1, 4, 2)
    wrng = np.random.default_rng(int(abs(t.s) * 1000) + int(abs(t.d) * 10))
    is_lit = wrng.random(len(corners)) < 0.3 * p["lit"]
    cv.polys(corners[~is_lit], glass)
    cv.polys(corners[is_lit], lit)


def draw_barrier(cv: Canvas, cam: Camera, t: Thing, s_cam: float, shade: dict) -> None:
    p = t.p
    s1, s2 = max(t.s, s_cam + NEAR), min(t.s + t.length, s_cam + FAR)
    if s2 <= s1:
        return
    y0, y1 = (0.35, p["height"]) if t.kind == "guardrail" else (0.0, p["height"])
    mat = cv.material(_shade(p["colour"], shade["side"]), t.kind)
    n = max(1, math.ceil((s2 - s1) / 4.0))
    edges = np.linspace(s1, s2, n + 1) - s_cam
    quads = []
    for a, b in itertools.pairwise(edges):
        ua, va0 = cam.project(a, t.d, y0)
        _, va1 = cam.project(a, t.d, y1)
        ub, vb0 = cam.project(b, t.d, y0)
        _, vb1 = cam.project(b, t.d, y1)
        quads.append([(ua, va0), (ub, vb0), (ub, vb1), (ua, va1)])
    cv.polys(quads, mat)
    if t.kind == "wall":  # a darker coping along the top
        cap = cv.material(_shade(p["colour"], shade["side"] * 0.7), "wall")
        cv.polys([[q[3], q[2], (q[2][0], q[2][1] + 0.15 * (q[1][1] - q[2][1])),
                   (q[3][0], q[3][1] + 0.15 * (q[0][1] - q[3][1]))] for q in quads], cap)
        return
    post = cv.material(_shade(p["colour"], shade["side"] * 0.55), t.kind)
    every = p["post_every"] if t.kind == "guardrail" else (0.25 if p["height"] < 1.3 else p["post_every"])
    for sp in np.arange(math.ceil(s1 / every) * every, s2, every):
        dz = sp - s_cam
        top = cam.project(dz, t.d, p["height"] + (0.05 if t.kind == "fence" else 0.0))
        bottom = cam.project(dz, t.d, 0.0)
        cv.line(top, bottom, max(1.0, 0.08 * cam.f / dz), post)


class Billboard:
    """Shapes in metres on a plane facing the camera at one depth (x right, y up)."""

    def __init__(self, cv: Canvas, cam: Camera, dz: float, d: float):
        self.cv = cv
        self.k = cam.f / dz
        self.u0, self.v0 = cam.project(dz, d, 0.0)

    def px(self, x, y):
        return self.u0 + x * self.k, self.v0 - y * self.k

    def rect(self, x0, y0, x1, y1, mid):
        self.cv.polys([[self.px(x0, y0), self.px(x1, y0), self.px(x1, y1), self.px(x0, y1)]], mid)

    def quad(self, pts, mid):
        self.cv.polys([[self.px(x, y) for x, y in pts]], mid)

    def ellipse(self, x, y, rx, ry, mid, thickness=-1.0):
        self.cv.ellipse(self.px(x, y), (rx * self.k, ry * self.k), mid,
                        thickness * self.k if thickness > 0 else -1)

    def line(self, x0, y0, x1, y1, width, mid):
        self.cv.line(self.px(x0, y0), self.px(x1, y1), max(1.0, width * self.k), mid)


def _limb(x0, y0, x1, y1, w):
    """A quad of width w from (x0, y0) to (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy) or 1.0
    ox, oy = -dy / n * w / 2, dx / n * w / 2
    return [(x0 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1 - ox, y1 - oy), (x0 - ox, y0 - oy)]


def draw_person(b: Billboard, cv: Canvas, p: dict, h: float, part: str, x: float = 0.0,
                seat: float | None = None, lean: float = 0.0) -> None:
    top = cv.material(p["top"], part)
    legs = cv.material(p["legs"], part)
    skin = cv.material(p["skin"], part)
    hair = cv.material((45, 35, 30), part)
    hip = seat if seat is not None else 0.5 * h
    shoulder = hip + 0.32 * h
    if seat is None:
        st = p.get("stride", 0.1)
        b.quad(_limb(x - 0.07, hip, x - 0.07 - st, 0.0, 0.14), legs)
        b.quad(_limb(x + 0.07, hip, x + 0.07 + st, 0.0, 0.14), legs)
    else:  # legs down to the pedals
        b.quad(_limb(x - 0.08, hip, x - 0.1, 0.3, 0.13), legs)
        b.quad(_limb(x + 0.08, hip, x + 0.1, 0.45, 0.13), legs)
    b.quad([(x - 0.2, hip), (x + 0.2, hip), (x + 0.2 + lean, shoulder), (x - 0.2 + lean, shoulder)], top)
    b.quad(_limb(x - 0.2 + lean, shoulder - 0.03, x - 0.27, hip + 0.02, 0.1), top)
    b.quad(_limb(x + 0.2 + lean, shoulder - 0.03, x + 0.27, hip + 0.02, 0.1), top)
    b.ellipse(x + lean, shoulder + 0.13 * h * 0.6, 0.1, 0.125, skin)
    b.ellipse(x + lean, shoulder + 0.13 * h * 0.6 + 0.06, 0.1, 0.07, hair)
    if p.get("bag"):
        b.rect(x + 0.22, hip - 0.1, x + 0.38, hip + 0.15, cv.material((70, 50, 40), part))


def draw_actor(cv: Canvas, cam: Camera, t: Thing, s_cam: float, shade: dict, dz: float) -> None:
    p = t.p
    b = Billboard(cv, cam, dz, t.d)
    if t.kind == "tree":
        bark = cv.material(p["bark"], "tree")
        b.rect(-p["trunk_r"], 0.0, p["trunk_r"], p["trunk_h"] + 0.3, bark)
        cy = p["trunk_h"] + p["crown"] * 0.7
        for i, (ox, oy, r) in enumerate(p["blobs"]):
            g = cv.material(_shade(p["green"], 0.8 + 0.1 * i), "tree")
            rr = p["crown"] * (0.65 + 0.15 * r)
            b.ellipse(ox * p["crown"] * 0.5, cy + oy * p["crown"] * 0.35, rr, rr * 0.9, g)
    elif t.kind == "lamp":
        mat = cv.material(p["colour"], "pole")
        b.rect(-0.09, 0.0, 0.09, p["height"], mat)
        toward = -1.0 if t.d > 0 else 1.0
        b.line(0.0, p["height"] - 0.1, toward * p["arm"], p["height"] + 0.1, 0.08, mat)
        b.ellipse(toward * p["arm"], p["height"], 0.28, 0.09, cv.material((230, 225, 200), "pole", emit=1.0))
    elif t.kind == "sign":
        b.rect(-0.04, 0.0, 0.04, p["height"], cv.material((150, 150, 150), "pole"))
        outer, inner = [((200, 30, 30), (235, 235, 235)), ((30, 70, 160), (30, 70, 160)),
                        ((235, 235, 235), (30, 90, 170)), ((230, 180, 30), (30, 30, 30))][p["scheme"]]
        r = p["size"] / 2
        y = p["height"] + r
        om, im = cv.material(outer, "sign"), cv.material(inner, "sign")
        if p["shape"] == "circle":
            b.ellipse(0, y, r, r, om)
            b.ellipse(0, y, r * 0.72, r * 0.72, im)
        elif p["shape"] == "triangle":
            b.quad([(-r, y - r * 0.8), (r, y - r * 0.8), (0, y + r)], om)
            b.quad([(-r * 0.6, y - r * 0.55), (r * 0.6, y - r * 0.55), (0, y + r * 0.5)], im)
        else:
            w = r * (1.5 if p["shape"] == "rect" else 1.0)
            b.rect(-w, y - r, w, y + r, om)
            b.rect(-w * 0.8, y - r * 0.75, w * 0.8, y + r * 0.75, im)
    elif t.kind == "tlight":
        b.rect(-0.06, 0.0, 0.06, p["height"], cv.material((70, 72, 75), "pole"))
        b.rect(-0.18, p["height"], 0.18, p["height"] + 0.95, cv.material((30, 30, 30), "tlight"))
        for i, colour in enumerate(((230, 40, 30), (240, 180, 30), (40, 200, 80))):
            on = i == p["lit"]
            mat = cv.material(colour if on else _shade(colour, 0.3), "tlight", emit=1.0 if on else 0.0)
            b.ellipse(0.0, p["height"] + 0.78 - 0.3 * i, 0.1, 0.1, mat)
    elif t.kind == "static":
        b.rect(-p["w"] / 2, 0.0, p["w"] / 2, p["h"], cv.material(p["colour"], "static"))
        b.rect(-p["w"] / 2 - 0.03, p["h"] - 0.08, p["w"] / 2 + 0.03, p["h"],
               cv.material(_shade(p["colour"], 0.6), "static"))
    elif t.kind == "pedestrian":
        draw_person(b, cv, p, p["height"], "pedestrian")
    elif t.kind == "bicyclist":
        draw_bicyclist(b, cv, p)


def draw_bicyclist(b: Billboard, cv: Canvas, p: dict) -> None:
    frame = cv.material(p["frame"], "bicyclist")
    tyre = cv.material((25, 25, 25), "bicyclist")
    if p["view"] == "rear":
        b.rect(-0.03, 0.0, 0.03, 0.7, tyre)
        b.line(-0.3, 1.05, 0.3, 1.05, 0.04, frame)
        if p["rider"]:
            draw_person(b, cv, p, 1.75, "bicyclist", seat=0.95, lean=0.0)
        return
    f = p["facing"]
    for x in (-0.55, 0.55):
        b.ellipse(x, 0.35, 0.34, 0.34, tyre, thickness=0.06)
    rear, crank, seat, head, front = (-0.55 * f, 0.35), (0.0, 0.35), (-0.15 * f, 0.9), (0.45 * f, 0.95), (0.55 * f, 0.35)
    for a, c in ((rear, crank), (crank, seat), (seat, head), (crank, head), (head, front), (rear, seat)):
        b.line(a[0], a[1], c[0], c[1], 0.05, frame)
    if p["rider"]:
        draw_person(b, cv, p, 1.75, "bicyclist", x=-0.1 * f, seat=0.95, lean=0.25 * f)


def draw_car(cv: Canvas, cam: Camera, t: Thing, s_cam: float, shade: dict) -> None:
    p = t.p
    w, h, length = p["width"], p["height"] + (0.45 if p["van"] else 0.0), t.length
    s0 = max(t.s, s_cam + NEAR) - s_cam
    s1 = t.s + length - s_cam
    if s1 <= s0:
        return
    dl, dr = t.d - w / 2, t.d + w / 2

    def box(z0, z1, a, b_, y0, y1):
        pts = [cam.project(z, d, y) for z in (z0, z1) for d in (a, b_) for y in (y0, y1)]
        return np.array(pts, np.float32)

    paint = p["paint"]
    body = cv.material(_shade(paint, shade["side"]), "car")
    cv.convex(box(s0, s1, dl, dr, 0.25, 0.95), body)
    if p["van"]:
        cv.convex(box(s0, s1 - 0.8, dl + 0.05, dr - 0.05, 0.9, h), body)
        cab = (s0, s1 - 0.8)
    else:
        cab = (s0 + 0.22 * length, s0 + 0.78 * length) if t.s >= s_cam + NEAR else (s0, s1 - 0.2 * length)
        cv.convex(box(cab[0], cab[1], dl + 0.12, dr - 0.12, 0.9, h), cv.material(_shade(paint, 0.9 * shade["side"]), "car"))
    if t.s < s_cam + NEAR:
        return
    z = s0
    near = cv.material(_shade(paint, shade["front"]), "car")
    cv.polys([[cam.project(z, dl, 0.25), cam.project(z, dr, 0.25), cam.project(z, dr, 0.95),
               cam.project(z, dl, 0.95)]], near)
    glass = cv.material((40, 48, 60), "car")
    zc = cab[0]
    y_top = h - 0.08
    cv.polys([[cam.project(zc, dl + 0.2, 1.0), cam.project(zc, dr - 0.2, 1.0), cam.project(zc, dr - 0.25, y_top),
               cam.project(zc, dl + 0.25, y_top)]], glass)
    tyre = cv.material((20, 20, 22), "car")
    for dw in (dl + 0.2, dr - 0.2):
        u, v = cam.project(z + 0.6, dw, 0.3)
        k = cam.f / (z + 0.6)
        cv.ellipse((u, v), (0.14 * k, 0.3 * k), tyre)
    light = (220, 30, 30) if p["facing"] > 0 else (245, 240, 215)
    lm = cv.material(light, "car", emit=1.0)
    for a, b_ in ((dl + 0.08, dl + 0.35), (dr - 0.35, dr - 0.08)):
        cv.polys([[cam.project(z, a, 0.7), cam.project(z, b_, 0.7), cam.project(z, b_, 0.85),
                   cam.project(z, a, 0.85)]], lm)
    plate = cv.material((230, 225, 120) if p["facing"] > 0 else (235, 235, 235), "car")
    cv.polys([[cam.project(z, t.d - 0.25, 0.4), cam.project(z, t.d + 0.25, 0.4), cam.project(z, t.d + 0.25, 0.52),
               cam.project(z, t.d - 0.25, 0.52)]], plate)


def render_scene(street: Street, cam: Camera, s_cam: float, t: float, size, sky_rgb, shade):
    """Material-id map of one frame, plus its look-up tables and the ground's world coords."""
    h, w = size
    cv = Canvas(h, w, sky_rgb)
    c = street.colours
    mats = {"road": cv.material(c["road"], "road"), "lane": cv.material(c["lane"], "lane"),
            "crosswalk": cv.material(c["lane"], "crosswalk"), "sidewalk": cv.material(c["sidewalk"], "sidewalk"),
            "joint": cv.material(_shade(c["sidewalk"], 0.85), "sidewalk"),
            "kerb": cv.material(_shade(c["sidewalk"], 1.12), "sidewalk"), "terrain": cv.material(c["terrain"], "terrain")}
    ground = draw_ground(cv, cam, street, s_cam, mats)
    for thing in sorted((b for b in street.backdrop if b.kind == "building"), key=lambda b: -(b.s + b.length)):
        if thing.s + thing.length > s_cam + NEAR and thing.s < s_cam + FAR * 1.5:
            draw_building(cv, cam, thing, s_cam, shade)
    for thing in sorted((b for b in street.backdrop if b.kind != "building"), key=lambda b: -(b.s + b.length)):
        if thing.s + thing.length > s_cam + NEAR and thing.s < s_cam + FAR:
            draw_barrier(cv, cam, thing, s_cam, shade)
    visible = []
    lane_w = 2 * street.road_half / street.lanes
    for a in street.actors:
        s = a.s + a.speed * t
        if a.kind == "car" and abs(a.d - cam.lateral) < 0.6 * lane_w and s - s_cam < 8.0:
            continue  # the car we drive keeps its distance from the one ahead
        if s_cam + NEAR + 0.5 < s < s_cam + FAR or (a.kind == "car" and s < s_cam + FAR and s + a.length > s_cam + NEAR):
            visible.append((s - s_cam, a))
    for dz, a in sorted(visible, key=lambda x: -x[0]):
        if a.kind == "car":
            moved = Thing(a.kind, a.s + a.speed * t, a.d, a.length, a.speed, a.p)
            draw_car(cv, cam, moved, s_cam, shade)
        else:
            draw_actor(cv, cam, a, s_cam, shade, dz)
    return cv, ground


# ---------------------------------------------------------------------------------------
# The two appearances
def value_noise(rng: np.random.Generator, shape, cell: int) -> np.ndarray:
    """Smooth noise with features about `cell` px wide, zero mean, unit std."""
    h, w = shape
    small = rng.standard_normal((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(small, ((w // cell + 3) * cell, (h // cell + 3) * cell), interpolation=cv2.INTER_CUBIC)
    out = big[cell:cell + h, cell:cell + w]
    return (out - out.mean()) / (out.std() + 1e-6)


class Textures:
    """Noise fields made once per run; each frame takes a random window of them."""

    def __init__(self, seed: int, size):
        rng = np.random.default_rng([seed, 7])
        h, w = size
        self.shape = (2 * h, 2 * w)
        self.fine = (rng.standard_normal(self.shape).astype(np.float32) * 0.6
                     + value_noise(rng, self.shape, 2) * 0.8)
        self.medium = value_noise(rng, self.shape, 8)
        self.coarse = value_noise(rng, self.shape, 48)
        self.ground = rng.standard_normal((512, 512)).astype(np.float32) * 0.7 + value_noise(rng, (512, 512), 6)

    def window(self, field: np.ndarray, rng, size) -> np.ndarray:
        h, w = size
        y = int(rng.integers(field.shape[0] - h + 1))
        x = int(rng.integers(field.shape[1] - w + 1))
        return field[y:y + h, x:x + w]


# Per-part texture strength in the "real" style: (fine grain, medium blotches)
REAL_TEXTURE = {"sky": (0.0, 0.0), "building": (0.05, 0.07), "road": (0.10, 0.06), "lane": (0.08, 0.05),
                "crosswalk": (0.08, 0.05), "sidewalk": (0.08, 0.05), "terrain": (0.18, 0.15), "wall": (0.06, 0.08),
                "fence": (0.06, 0.06), "guardrail": (0.04, 0.04), "tree": (0.22, 0.2), "pole": (0.03, 0.03),
                "sign": (0.02, 0.02), "tlight": (0.02, 0.02), "car": (0.02, 0.03), "pedestrian": (0.06, 0.06),
                "bicyclist": (0.05, 0.05), "static": (0.05, 0.05)}
REAL_TEXTURE_LUT = np.array([REAL_TEXTURE[p] for p in PART_NAMES], np.float32)
GROUND_LUT = np.isin(np.arange(len(PART_NAMES)), [PART[p] for p in GROUND_PARTS])


def compose(cv: Canvas):
    colours, parts, emit = cv.luts()
    return colours[cv.ids], parts[cv.ids], emit[cv.ids]


def sky_gradient(img: np.ndarray, sky: np.ndarray, horizon: float, zenith_rgb, horizon_rgb) -> None:
    h = img.shape[0]
    t = np.clip(1.0 - (np.arange(h, dtype=np.float32) + 0.5) / max(horizon, 1.0), 0, 1)[:, None, None]
    grad = np.asarray(horizon_rgb, np.float32) * (1 - t) + np.asarray(zenith_rgb, np.float32) * t
    grad = np.broadcast_to(grad, img.shape)
    img[sky] = grad[sky]


def finish_sim(img, ids, horizon, look) -> np.ndarray:
    """CARLA-like: flat colours, crisp edges, saturated, clean."""
    sky = ids == 0
    sky_gradient(img, sky, horizon, look["zenith"], look["horizon"])
    grey = img.mean(axis=2, keepdims=True)
    img = grey + look["saturation"] * (img - grey)
    img = img * np.asarray(look["tint"], np.float32) * look["gain"]
    return np.clip(img, 0, 255).astype(np.uint8)


TONE_STEPS = 1024


@functools.lru_cache(maxsize=8)
def tone_curve(gamma: float, lift: float, contrast: float) -> np.ndarray:
    """Gamma, black-level lift and contrast of a camera's response, as a look-up table."""
    x = np.linspace(0.0, 1.0, TONE_STEPS + 1, dtype=np.float32)
    return (lift + contrast * 255.0 * np.power(x, gamma)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def radius2(h: int, w: int) -> np.ndarray:
    """Squared distance from the image centre, 1 at the edge midpoints (for vignetting)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2


def finish_real(img, parts, ids, emit, ground, horizon, look, tex: Textures, rng) -> np.ndarray:
    """A real camera: textures, overcast sky, colour cast, blur, vignetting, sensor noise."""
    h, w = parts.shape
    sky = ids == 0
    sky_gradient(img, sky, horizon, look["zenith"], look["horizon"])
    amp = REAL_TEXTURE_LUT[parts] * look.get("texture", 1.0)
    fine = tex.window(tex.fine, rng, (h, w)).copy()
    if ground is not None:  # ground texture fixed to the road surface, so it recedes in perspective
        top, s, d = ground
        # `% 512` after the cast: a float mod of a tiny negative number can round up to 512
        gi = np.broadcast_to(np.mod(s * 9.0, 512).astype(np.int32) % 512, d.shape)
        gj = np.mod(d * 9.0, 512).astype(np.int32) % 512
        g = tex.ground[gi, gj]
        on_ground = GROUND_LUT[parts[top:]]
        fine[top:][on_ground] = g[on_ground]
    mod = 1.0 + amp[..., 0] * fine + amp[..., 1] * tex.window(tex.medium, rng, (h, w))
    img *= mod[..., None]
    img[sky] += (tex.window(tex.coarse, rng, (h, w))[sky] * look["clouds"])[:, None]
    img = img * np.asarray(look["cast"], np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + look["saturation"] * (img - grey)
    img = tone_curve(look["gamma"], look["lift"], look["contrast"])[
        np.clip(img * TONE_STEPS / 255.0, 0, TONE_STEPS).astype(np.int32)]
    if look["dusk"]:
        img = img * look["dusk_gain"] * np.array([0.85, 0.95, 1.15], np.float32)
        glow = cv2.GaussianBlur(emit, (0, 0), 2.0) * 0.8 + emit
        img += glow[..., None] * np.array([200, 170, 110], np.float32)
    img *= (1.0 - look["vignette"] * radius2(h, w) / 2)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), look["blur"])
    noise = rng.standard_normal((h, w, 3), dtype=np.float32) * look["noise"]
    noise += rng.standard_normal((h, w, 1), dtype=np.float32) * look["noise"]  # luminance grain
    img += noise
    return np.clip(img, 0, 255).astype(np.uint8)


def sim_look(rng, weather: str) -> dict:
    look = {"zenith": _jitter(rng, (60, 120, 215), 12), "horizon": _jitter(rng, (170, 205, 240), 10),
            "saturation": 1.25, "tint": (1.0, 1.0, 1.0), "gain": 1.05}
    if weather == "CloudyNoon":
        look.update(zenith=(150, 160, 175), horizon=(200, 205, 212), saturation=1.05, gain=0.95)
    elif weather == "ClearSunset":
        look.update(zenith=(80, 110, 180), horizon=(250, 190, 140), tint=(1.08, 0.98, 0.86), gain=0.95)
    return look


def real_look(rng, dusk: bool) -> dict:
    overcast = rng.random() < 0.75
    return {
        "zenith": _jitter(rng, (205, 210, 215) if overcast else (130, 165, 205), 10),
        "horizon": _jitter(rng, (235, 236, 236) if overcast else (205, 215, 225), 8),
        "clouds": 14.0 if overcast else 6.0,
        "cast": (rng.uniform(0.96, 1.12), rng.uniform(0.97, 1.05), rng.uniform(0.82, 0.98)),
        "saturation": rng.uniform(0.6, 0.8), "gamma": rng.uniform(0.95, 1.15),
        "lift": rng.uniform(6, 16), "contrast": rng.uniform(0.78, 0.9),
        "dusk": dusk, "dusk_gain": rng.uniform(0.35, 0.45),
        "vignette": rng.uniform(0.25, 0.45), "blur": rng.uniform(0.6, 1.0),
        "noise": rng.uniform(6.0, 9.0) if dusk else rng.uniform(2.0, 3.5),
    }


SIM_STYLES = ("carla", "randomised")


def randomised_look(rng) -> dict:
    """Domain randomisation of one sim frame's appearance (`--sim-style randomised`): sky,
    lighting, colour cast, tone curve, texture strength, blur, sensor noise and vignetting
    drawn far wider than either style, so that a network trained on it cannot rely on any
    one appearance and has to read the scene's layout and shapes, which real frames share."""
    sky = str(rng.choice(["overcast", "clear", "sunset", "dusk"], p=[0.45, 0.35, 0.12, 0.08]))
    zenith, horizon = {"overcast": ((200, 205, 212), (232, 234, 236)),
                       "clear": ((90, 140, 210), (190, 210, 235)),
                       "sunset": ((90, 110, 170), (245, 190, 140)),
                       "dusk": ((70, 80, 110), (150, 140, 140))}[sky]
    return {
        "zenith": _jitter(rng, zenith, 30), "horizon": _jitter(rng, horizon, 25),
        "clouds": rng.uniform(0.0, 20.0),
        "cast": tuple(rng.uniform(0.8, 1.2, size=3)),
        "saturation": rng.uniform(0.45, 1.35), "gamma": rng.uniform(0.75, 1.35),
        "lift": rng.uniform(0, 22), "contrast": rng.uniform(0.65, 1.0),
        "dusk": sky == "dusk", "dusk_gain": rng.uniform(0.45, 0.7),
        "vignette": rng.uniform(0.0, 0.5), "blur": rng.uniform(0.3, 1.6),
        "noise": rng.uniform(0.0, 8.0), "texture": rng.uniform(0.0, 2.5),
    }


def randomise_materials(cv: Canvas, rng, amount: float = 0.35) -> None:
    """Every material (each facade, car, tree, the road...) gets its own random colour gain
    and brightness, so that no class keeps one colour across the sim frames."""
    gains = rng.uniform(1 - amount, 1 + amount, size=(len(cv.rgb), 3))
    gains *= rng.uniform(0.7, 1.3, size=(len(cv.rgb), 1))
    cv.rgb = [tuple(min(255.0, c * g) for c, g in zip(rgb, gain))
              for rgb, gain in zip(cv.rgb, gains)]


def camera_lateral(street: Street) -> float:
    """Centre of the kerb-side lane of the driving side (the next lane in on wide roads)."""
    lane_w = 2 * street.road_half / street.lanes
    lane = 1 if street.lanes >= 3 else 0
    return street.drive_side * (street.road_half - (lane + 0.5) * lane_w)


def make_camera(rng, size, height: float, lateral: float, curve: float) -> Camera:
    h, w = size
    hfov = math.radians(rng.uniform(62, 78))
    f = w / (2 * math.tan(hfov / 2))
    return Camera(f, w / 2 + rng.uniform(-0.02, 0.02) * w, h * rng.uniform(0.40, 0.50), height, lateral, curve)


# ---------------------------------------------------------------------------------------
# Writing the two datasets
def _imwrite(path: Path, image: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_idda_frame(root: Path, stem: str, rgb: np.ndarray, parts: np.ndarray) -> None:
    _imwrite(root / "rgb" / f"{stem}.jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    red = PART_TO_IDDA[parts]
    bgra = np.zeros(parts.shape + (4,), np.uint8)
    bgra[..., 2] = red
    bgra[..., 3] = 255
    _imwrite(root / "labels" / f"{stem}.png", bgra, PNG_PARAMS)


def write_camvid_frame(root: Path, split: str, name: str, rgb: np.ndarray, parts: np.ndarray) -> None:
    _imwrite(root / split / f"{name}.png", rgb[..., ::-1], PNG_PARAMS)
    _imwrite(root / f"{split}_labels" / f"{name}_L.png", PART_TO_CAMVID_RGB[parts][..., ::-1], PNG_PARAMS)


def write_classes_info(path: Path) -> None:
    """classes_info.json as IDDA ships it: ids, names, the id -> class mapping, a palette."""
    label2camvid = [[i, int(IDDA_TO_CLASS[i]) if IDDA_TO_CLASS[i] != BACKGROUND else 255]
                    for i in range(NUM_IDDA_IDS)]
    palette = ids_to_rgb(IDDA_TO_CLASS[:NUM_IDDA_IDS]).tolist()
    path.write_text(json.dumps({"classes": NUM_IDDA_IDS, "label2camvid": label2camvid,
                                "label": list(IDDA_ID_NAMES), "palette": palette}, indent=1) + "\n")


def write_class_dict(path: Path) -> None:
    lines = ["name,r,g,b"] + [f"{name},{r},{g},{b}" for name, (r, g, b) in CAMVID_COLOURS.items()]
    path.write_text("\n".join(lines) + "\n")


def split_counts(n: int) -> list[tuple[str, int]]:
    """60/20/20 of n frames, at least one val and test frame when n >= 3."""
    val = max(1 if n >= 3 else 0, round(n * 0.2))
    test = max(1 if n >= 3 else 0, round(n * 0.2))
    return [("train", n - val - test), ("val", val), ("test", test)]


def _chunks(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def generate_source(out: Path, seed: int, size, n: int, style: str = "carla") -> int:
    """The sim domain: sequences of SOURCE_SEQUENCE_LEN frames, each a town/weather/car.
    `style` carla: CARLA-like flat shading, right-hand traffic; randomised: the same scenes
    with per-frame domain randomisation (randomised_look, randomise_materials), either
    traffic side, wider camera heights."""
    if style not in SIM_STYLES:
        raise ValueError(f"sim style {style!r} is not one of {', '.join(SIM_STYLES)}")
    randomised = style == "randomised"
    textures = Textures(seed + 1000, size) if randomised else None
    root = out / "idda"
    for sub in ("rgb", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_classes_info(root / "classes_info.json")
    written = 0
    for seq, count in enumerate(_chunks(n, max(1, math.ceil(n / SOURCE_SEQUENCE_LEN)))):
        rng = np.random.default_rng([seed, 1, seq])
        town = IDDA_TOWNS[int(rng.integers(len(IDDA_TOWNS)))]
        weather = str(rng.choice(IDDA_WEATHER, p=[0.6, 0.2, 0.2]))
        car = str(rng.choice(list(IDDA_CARS)))
        spacing = rng.uniform(10, 16)
        side = int(rng.choice([-1, 1])) if randomised else 1
        street = make_street(rng, spacing * count + 10, drive_side=side)
        lateral = camera_lateral(street)
        height = rng.uniform(1.1, 1.9) if randomised else IDDA_CARS[car]
        cam = make_camera(rng, size, height, lateral, street.curve)
        shade = {"side": rng.uniform(0.72, 0.85), "front": 1.0}
        for k in range(count):
            frng = np.random.default_rng([seed, 1, seq, k])
            look = randomised_look(frng) if randomised else sim_look(frng, weather)
            cv, ground = render_scene(street, cam, k * spacing, k * spacing / 8.0, size, look["horizon"], shade)
            if randomised:
                randomise_materials(cv, frng)
            img, parts, emit = compose(cv)
            rgb = (finish_real(img, parts, cv.ids, emit, ground, cam.horizon, look, textures, frng)
                   if randomised else finish_sim(img, cv.ids, cam.horizon, look))
            stem = f"{town}_{weather}_{car}_{seq * 1000 + k * 15:06d}"
            write_idda_frame(root, stem, rgb, parts)
            written += 1
    return written


def generate_target(out: Path, seed: int, size, n: int, textures: Textures) -> dict[str, int]:
    """The real domain: CamVid's four sequences, 0001TP at dusk, each split 60/20/20."""
    root = out / "camvid"
    for split, _ in SPLIT_FRACTIONS:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}_labels").mkdir(parents=True, exist_ok=True)
    write_class_dict(root / "class_dict.csv")
    counts = {split: 0 for split, _ in SPLIT_FRACTIONS}
    # Every sequence gets at least 3 frames, so each of train/val/test has all of them.
    for seq, count in enumerate(_chunks(n, min(len(CAMVID_SEQUENCES), max(1, n // 3)))):
        if count == 0:
            continue
        prefix, fmt, first, dusk = CAMVID_SEQUENCES[seq]
        rng = np.random.default_rng([seed, 2, seq])
        spacing = rng.uniform(6, 10)
        street = make_street(rng, spacing * count + 10, drive_side=-1)
        lateral = camera_lateral(street)
        cam = make_camera(rng, size, rng.uniform(1.3, 1.5), lateral, street.curve)
        look = real_look(rng, dusk)
        shade = {"side": rng.uniform(0.75, 0.9), "front": 1.0}
        k = 0
        for split, m in split_counts(count):
            for _ in range(m):
                frng = np.random.default_rng([seed, 2, seq, k])
                cv, ground = render_scene(street, cam, k * spacing, k * 1.0, size, look["horizon"], shade)
                img, parts, emit = compose(cv)
                rgb = finish_real(img, parts, cv.ids, emit, ground, cam.horizon, look, textures, frng)
                write_camvid_frame(root, split, f"{prefix}_{fmt.format(first + k * FRAME_STEP)}", rgb, parts)
                counts[split] += 1
                k += 1
    return counts


def clear_previous_output(out: Path) -> None:
    """Remove an earlier make-synthetic output in `out` (so no stale frames stay behind);
    refuse to touch idda/ or camvid/ folders that make-synthetic did not write."""
    owned = [out / "idda", out / "camvid"]
    if not any(p.exists() for p in owned):
        return
    if not (out / "summary.json").is_file():
        raise FileExistsError(f"{out} already holds idda/ or camvid/ that make-synthetic did not write "
                              f"(no summary.json); choose another --out or remove them")
    for path in owned:
        if path.exists():
            shutil.rmtree(path)


def make_synthetic(out: str | Path, seed: int = 0, size: tuple[int, int] = (240, 320),
                   num_source: int = 200, num_target: int = 200, stats_frames: int = 32,
                   sim_style: str = "carla") -> dict:
    """Write both domains under `out`; returns a summary (frames/s is measured, not stored)."""
    out = Path(out)
    if min(size) < 16:
        raise ValueError(f"--size must be at least 16x16, got {size[0]}x{size[1]}")
    if num_source < 1 or num_target < 3:
        raise ValueError("need --num-source >= 1 and --num-target >= 3 (one frame per CamVid split)")
    clear_previous_output(out)
    target_size = camvid_size_for(size)
    # CPU time of this process: frames per second of one core, whatever else the machine runs.
    start = time.process_time()
    n_src = generate_source(out, seed, size, num_source, sim_style)
    mid = time.process_time()
    counts = generate_target(out, seed, target_size, num_target, Textures(seed, target_size))
    end = time.process_time()
    summary = {
        "seed": seed,
        "idda": {"frames": n_src, "size": list(size), "root": "idda", "style": sim_style},
        "camvid": {"frames": counts, "size": list(target_size), "root": "camvid",
                   "sequences": [s[0] for s in CAMVID_SEQUENCES], "dusk": "0001TP"},
    }
    if stats_frames:
        summary["appearance"] = {
            "idda": channel_stats(build_dataset("idda", out / "idda", "all"), stats_frames),
            "camvid": channel_stats(build_dataset("camvid", out / "camvid", ["train", "val", "test"]),
                                    stats_frames),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["frames_per_cpu_second"] = {"idda": round(n_src / max(mid - start, 1e-9), 1),
                                        "camvid": round(sum(counts.values()) / max(end - mid, 1e-9), 1)}
    return summary
