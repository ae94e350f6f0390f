"""Random streets and the cameras that drive along them: one street per sequence, long
enough for all its frames, with everything along it (buildings, walls, fences, trees,
lamp posts, signs, traffic lights, bins, parked and moving cars, pedestrians, bicyclists).

Every draw comes from the sequence's random generator in a fixed order: changing the order
of the draws changes the bytes written for a seed."""
from __future__ import annotations

import math

import numpy as np

from uda_seg_core.data.synthetic.scene import FAR, Camera, Street, Thing, jittered

FACADES = ((196, 180, 150), (170, 160, 150), (150, 80, 60), (210, 205, 195), (120, 110, 100),
           (180, 120, 90), (140, 140, 145), (225, 215, 170))
CAR_PAINT = ((200, 200, 205), (30, 30, 35), (150, 20, 25), (20, 50, 120), (120, 125, 130),
             (235, 235, 235), (60, 80, 60), (170, 140, 60))
CLOTHES = ((40, 40, 60), (150, 30, 30), (30, 60, 120), (200, 200, 190), (60, 60, 60),
           (120, 90, 50), (30, 100, 60), (200, 150, 40))
SKIN = ((230, 190, 160), (190, 140, 110), (120, 80, 60))


def make_street(rng: np.random.Generator, length: float, drive_side: int) -> Street:
    lanes = int(rng.choice([2, 2, 2, 3, 4]))
    lane_w = rng.uniform(3.0, 3.6)
    road_half = lanes * lane_w / 2
    sidewalk = tuple(float(rng.choice([0.0, rng.uniform(2.0, 4.5)], p=[0.12, 0.88]))
                     for _ in range(2))
    verge = tuple(float(rng.choice([0.0, rng.uniform(1.0, 5.0)], p=[0.6, 0.4])) if sw else
                  float(rng.uniform(2.0, 6.0)) for sw in sidewalk)
    urban = rng.random() < 0.6
    colours = {
        "road": jittered(rng, (92, 92, 96), 14), "sidewalk": jittered(rng, (165, 160, 152), 16),
        "terrain": jittered(rng, (105, 125, 70), 18), "lane": (225, 225, 220),
    }
    street = Street(road_half, lanes, sidewalk, verge, float(rng.uniform(-1.2e-3, 1.2e-3)),
                    drive_side, bool(rng.random() < 0.6), bool(rng.random() < 0.7), [], colours,
                    [], [])
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
        d = side * (building_line + rng.uniform(0, 2.5))
        street.backdrop.append(Thing("building", s, d, length, p={
            "height": height, "depth": rng.uniform(8, 14),
            "colour": jittered(rng, FACADES[rng.integers(len(FACADES))]),
            "floor": rng.uniform(2.8, 3.4), "win_every": rng.uniform(2.4, 4.0),
            "glass": jittered(rng, (60, 70, 85), 15), "lit": rng.random()}))
        s += length + (rng.uniform(3, 14) if rng.random() < 0.35 else rng.uniform(0, 0.5))
    s = rng.uniform(-20, 20)
    while s < end:  # walls, fences, guardrails along the sidewalk's outer edge or the road
        kind = str(rng.choice(["fence", "wall", "guardrail"],
                              p=[0.5, 0.3, 0.2] if sw else [0.2, 0.2, 0.6]))
        length = rng.uniform(6, 35)
        d = side * (street.road_half + 0.3 if kind == "guardrail" and not sw else outer + 0.05)
        colour = {"fence": (120, 110, 95), "wall": (175, 170, 160),
                  "guardrail": (170, 175, 180)}[kind]
        street.backdrop.append(Thing(kind, s, d, length, p={
            "height": {"fence": rng.uniform(1.0, 2.0), "wall": rng.uniform(1.0, 2.6),
                       "guardrail": 0.8}[kind],
            "colour": jittered(rng, colour, 20), "post_every": rng.uniform(1.5, 2.5)}))
        s += length + rng.uniform(10, 45)
    s = rng.uniform(0, 10)
    while s < end:  # trees on the sidewalk or the verge
        if rng.random() < 0.65:
            d = (outer + verge / 2 if verge and rng.random() < 0.5
                 else street.road_half + min(1.0, sw / 2) + 0.3)
            street.actors.append(Thing("tree", s, side * d, p={
                "trunk_h": rng.uniform(1.8, 3.5), "trunk_r": rng.uniform(0.12, 0.25),
                "crown": rng.uniform(1.4, 3.2),
                "green": jittered(rng, (60, 105, 45), 22), "bark": jittered(rng, (90, 70, 50), 12),
                "blobs": rng.uniform(-1, 1, size=(4, 3)).tolist()}))
        s += rng.uniform(6, 16)
    s = rng.uniform(0, 25)
    while s < end:  # lamp posts at the kerb
        street.actors.append(Thing("lamp", s, side * (street.road_half + 0.35), p={
            "height": rng.uniform(6.0, 9.0), "arm": rng.uniform(0.8, 2.0),
            "colour": jittered(rng, (110, 112, 115), 25)}))
        s += rng.uniform(20, 34)
    s = rng.uniform(0, 20)
    while s < end:  # signs
        if rng.random() < 0.6:
            street.actors.append(Thing("sign", s, side * (street.road_half + 0.45), p={
                "height": rng.uniform(2.0, 2.8),
                "shape": str(rng.choice(["circle", "triangle", "square", "rect"])),
                "scheme": int(rng.integers(4)), "size": rng.uniform(0.6, 0.9)}))
        s += rng.uniform(12, 30)
    s = rng.uniform(2, 30)
    while s < end and sw:  # bins and bollards on the sidewalk
        d = side * (street.road_half + rng.uniform(0.3, sw))
        street.actors.append(Thing("static", s, d, p={
            "w": rng.uniform(0.3, 0.7), "h": rng.uniform(0.6, 1.1),
            "colour": jittered(rng, (60, 75, 60), 30)}))
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
        street.actors.append(_bicyclist(rng, rng.uniform(0, end),
                                        side * (street.road_half + sw * 0.7), "side", rider=False))


def _pedestrian(rng, s: float, d: float, speed: float = 0.0) -> Thing:
    return Thing("pedestrian", s, d, speed=speed, p={
        "height": rng.uniform(1.55, 1.9), "top": jittered(rng, CLOTHES[rng.integers(len(CLOTHES))]),
        "legs": jittered(rng, CLOTHES[rng.integers(len(CLOTHES))]),
        "skin": SKIN[rng.integers(len(SKIN))],
        "stride": rng.uniform(0.0, 0.25), "bag": rng.random() < 0.3})


def _bicyclist(rng, s: float, d: float, view: str, rider: bool = True,
               speed: float = 0.0) -> Thing:
    return Thing("bicyclist", s, d, speed=speed, p={
        "view": view, "rider": rider, "facing": int(rng.choice([-1, 1])),
        "frame": jittered(rng, CAR_PAINT[rng.integers(len(CAR_PAINT))]),
        "top": jittered(rng, CLOTHES[rng.integers(len(CLOTHES))]),
        "legs": jittered(rng, (40, 40, 50)),
        "skin": SKIN[rng.integers(len(SKIN))]})


def _car(rng, s: float, d: float, facing: int, speed: float) -> Thing:
    length = rng.uniform(3.9, 4.9)
    return Thing("car", s, d, length, speed, p={
        "width": rng.uniform(1.65, 1.95), "height": rng.uniform(1.35, 1.7), "facing": facing,
        "paint": jittered(rng, CAR_PAINT[rng.integers(len(CAR_PAINT))], 12),
        "van": rng.random() < 0.15})


def _populate_road(rng, street: Street, end: float) -> None:
    half = street.road_half
    for side in (-1, 1):  # parked cars along the kerb, never in the camera's lane
        if rng.random() < 0.6 and (side != street.drive_side or street.lanes >= 3):
            s = rng.uniform(-5, 5)
            while s < end:
                if rng.random() < 0.5:
                    street.actors.append(_car(rng, s, side * (half - 1.1),
                                              int(rng.choice([-1, 1])), 0.0))
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
            street.actors.append(_pedestrian(rng, c + rng.uniform(0.5, 3.5),
                                             rng.uniform(-half, half)))
        if rng.random() < 0.6:
            street.actors.append(_bicyclist(rng, c + 2.0, rng.uniform(-half, half), "side"))


def camera_lateral(street: Street) -> float:
    """Centre of the kerb-side lane of the driving side (the next lane in on wide roads)."""
    lane_w = 2 * street.road_half / street.lanes
    lane = 1 if street.lanes >= 3 else 0
    return street.drive_side * (street.road_half - (lane + 0.5) * lane_w)


def make_camera(rng, size, height: float, lateral: float, curve: float) -> Camera:
    h, w = size
    hfov = math.radians(rng.uniform(62, 78))
    f = w / (2 * math.tan(hfov / 2))
    return Camera(f, w / 2 + rng.uniform(-0.02, 0.02) * w, h * rng.uniform(0.40, 0.50), height,
                  lateral, curve)
