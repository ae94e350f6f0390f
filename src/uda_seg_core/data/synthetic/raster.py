"""Drawing one frame: a Canvas of material ids (each material carries a colour, a scene part
and an emission), the ground drawn per pixel, buildings and barriers as receding quads,
everything else as billboards facing the camera, painted far to near.

`render_scene` returns the Canvas and the ground's world coordinates; `compose` turns the
Canvas into the flat colour image, the part map and the emission map that the appearance
step (appearance.py) finishes."""
from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from uda_seg_core.data.synthetic.scene import FAR, NEAR, PART, Camera, Street, Thing, shaded


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


def compose(cv: Canvas):
    """A Canvas as images: flat colours (float32 RGB), scene part ids, emission."""
    colours, parts, emit = cv.luts()
    return colours[cv.ids], parts[cv.ids], emit[cv.ids]


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
    side_mat = cv.material(shaded(p["colour"], shade["side"]), "building")
    front_mat = cv.material(shaded(p["colour"], shade["front"]), "building")
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
    lit = cv.material(shaded(p["glass"], 1.15), "building", emit=1.0)  # glows only at dusk
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
    corners = np.stack([np.stack([u0[..., 0], v0[..., 0]], -1),
                        np.stack([u1[..., 0], v1[..., 0]], -1),
                        np.stack([u1[..., 1], v1[..., 1]], -1),
                        np.stack([u0[..., 1], v0[..., 1]], -1)], -2)
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
    mat = cv.material(shaded(p["colour"], shade["side"]), t.kind)
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
        cap = cv.material(shaded(p["colour"], shade["side"] * 0.7), "wall")
        cv.polys([[q[3], q[2], (q[2][0], q[2][1] + 0.15 * (q[1][1] - q[2][1])),
                   (q[3][0], q[3][1] + 0.15 * (q[0][1] - q[3][1]))] for q in quads], cap)
        return
    post = cv.material(shaded(p["colour"], shade["side"] * 0.55), t.kind)
    every = (p["post_every"] if t.kind == "guardrail"
             else (0.25 if p["height"] < 1.3 else p["post_every"]))
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
    b.quad([(x - 0.2, hip), (x + 0.2, hip), (x + 0.2 + lean, shoulder),
            (x - 0.2 + lean, shoulder)], top)
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
            g = cv.material(shaded(p["green"], 0.8 + 0.1 * i), "tree")
            rr = p["crown"] * (0.65 + 0.15 * r)
            b.ellipse(ox * p["crown"] * 0.5, cy + oy * p["crown"] * 0.35, rr, rr * 0.9, g)
    elif t.kind == "lamp":
        mat = cv.material(p["colour"], "pole")
        b.rect(-0.09, 0.0, 0.09, p["height"], mat)
        toward = -1.0 if t.d > 0 else 1.0
        b.line(0.0, p["height"] - 0.1, toward * p["arm"], p["height"] + 0.1, 0.08, mat)
        b.ellipse(toward * p["arm"], p["height"], 0.28, 0.09,
                  cv.material((230, 225, 200), "pole", emit=1.0))
    elif t.kind == "sign":
        b.rect(-0.04, 0.0, 0.04, p["height"], cv.material((150, 150, 150), "pole"))
        outer, inner = [((200, 30, 30), (235, 235, 235)), ((30, 70, 160), (30, 70, 160)),
                        ((235, 235, 235), (30, 90, 170)),
                        ((230, 180, 30), (30, 30, 30))][p["scheme"]]
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
            mat = cv.material(colour if on else shaded(colour, 0.3), "tlight",
                              emit=1.0 if on else 0.0)
            b.ellipse(0.0, p["height"] + 0.78 - 0.3 * i, 0.1, 0.1, mat)
    elif t.kind == "static":
        b.rect(-p["w"] / 2, 0.0, p["w"] / 2, p["h"], cv.material(p["colour"], "static"))
        b.rect(-p["w"] / 2 - 0.03, p["h"] - 0.08, p["w"] / 2 + 0.03, p["h"],
               cv.material(shaded(p["colour"], 0.6), "static"))
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
    rear, crank, seat = (-0.55 * f, 0.35), (0.0, 0.35), (-0.15 * f, 0.9)
    head, front = (0.45 * f, 0.95), (0.55 * f, 0.35)
    for a, c in ((rear, crank), (crank, seat), (seat, head), (crank, head), (head, front),
                 (rear, seat)):
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
    body = cv.material(shaded(paint, shade["side"]), "car")
    cv.convex(box(s0, s1, dl, dr, 0.25, 0.95), body)
    if p["van"]:
        cv.convex(box(s0, s1 - 0.8, dl + 0.05, dr - 0.05, 0.9, h), body)
        cab = (s0, s1 - 0.8)
    else:
        cab = ((s0 + 0.22 * length, s0 + 0.78 * length) if t.s >= s_cam + NEAR
               else (s0, s1 - 0.2 * length))
        cv.convex(box(cab[0], cab[1], dl + 0.12, dr - 0.12, 0.9, h),
                  cv.material(shaded(paint, 0.9 * shade["side"]), "car"))
    if t.s < s_cam + NEAR:
        return
    z = s0
    near = cv.material(shaded(paint, shade["front"]), "car")
    cv.polys([[cam.project(z, dl, 0.25), cam.project(z, dr, 0.25), cam.project(z, dr, 0.95),
               cam.project(z, dl, 0.95)]], near)
    glass = cv.material((40, 48, 60), "car")
    zc = cab[0]
    y_top = h - 0.08
    cv.polys([[cam.project(zc, dl + 0.2, 1.0), cam.project(zc, dr - 0.2, 1.0),
               cam.project(zc, dr - 0.25, y_top), cam.project(zc, dl + 0.25, y_top)]], glass)
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
    cv.polys([[cam.project(z, t.d - 0.25, 0.4), cam.project(z, t.d + 0.25, 0.4),
               cam.project(z, t.d + 0.25, 0.52), cam.project(z, t.d - 0.25, 0.52)]], plate)


def render_scene(street: Street, cam: Camera, s_cam: float, t: float, size, sky_rgb, shade):
    """Material-id map of one frame, plus its look-up tables and the ground's world coords."""
    h, w = size
    cv = Canvas(h, w, sky_rgb)
    c = street.colours
    mats = {"road": cv.material(c["road"], "road"), "lane": cv.material(c["lane"], "lane"),
            "crosswalk": cv.material(c["lane"], "crosswalk"),
            "sidewalk": cv.material(c["sidewalk"], "sidewalk"),
            "joint": cv.material(shaded(c["sidewalk"], 0.85), "sidewalk"),
            "kerb": cv.material(shaded(c["sidewalk"], 1.12), "sidewalk"),
            "terrain": cv.material(c["terrain"], "terrain")}
    ground = draw_ground(cv, cam, street, s_cam, mats)
    for thing in sorted((b for b in street.backdrop if b.kind == "building"),
                        key=lambda b: -(b.s + b.length)):
        if thing.s + thing.length > s_cam + NEAR and thing.s < s_cam + FAR * 1.5:
            draw_building(cv, cam, thing, s_cam, shade)
    for thing in sorted((b for b in street.backdrop if b.kind != "building"),
                        key=lambda b: -(b.s + b.length)):
        if thing.s + thing.length > s_cam + NEAR and thing.s < s_cam + FAR:
            draw_barrier(cv, cam, thing, s_cam, shade)
    visible = []
    lane_w = 2 * street.road_half / street.lanes
    for a in street.actors:
        s = a.s + a.speed * t
        if a.kind == "car" and abs(a.d - cam.lateral) < 0.6 * lane_w and s - s_cam < 8.0:
            continue  # the car we drive keeps its distance from the one ahead
        if s_cam + NEAR + 0.5 < s < s_cam + FAR or (
                a.kind == "car" and s < s_cam + FAR and s + a.length > s_cam + NEAR):
            visible.append((s - s_cam, a))
    for dz, a in sorted(visible, key=lambda x: -x[0]):
        if a.kind == "car":
            moved = Thing(a.kind, a.s + a.speed * t, a.d, a.length, a.speed, a.p)
            draw_car(cv, cam, moved, s_cam, shade)
        else:
            draw_actor(cv, cam, a, s_cam, shade, dz)
    return cv, ground
