"""The two appearances of one rendered frame. "sim" (finish_sim): CARLA-like flat colours,
crisp edges, saturated, clean blue skies. "real" (finish_real): surface textures, overcast
skies, a colour cast, a camera's tone curve, lens blur, vignetting and sensor noise, with
a darker, grainier dusk. `randomised_look` and `randomise_materials` are the domain
randomisation of the sim style `randomised`."""
from __future__ import annotations

import functools

import cv2
import numpy as np

from uda_seg_core.data.synthetic.raster import Canvas
from uda_seg_core.data.synthetic.scene import GROUND_PARTS, PART, PART_NAMES, jittered


def value_noise(rng: np.random.Generator, shape, cell: int) -> np.ndarray:
    """Smooth noise with features about `cell` px wide, zero mean, unit std."""
    h, w = shape
    small = rng.standard_normal((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(small, ((w // cell + 3) * cell, (h // cell + 3) * cell),
                     interpolation=cv2.INTER_CUBIC)
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
        self.ground = (rng.standard_normal((512, 512)).astype(np.float32) * 0.7
                       + value_noise(rng, (512, 512), 6))

    def window(self, field: np.ndarray, rng, size) -> np.ndarray:
        h, w = size
        y = int(rng.integers(field.shape[0] - h + 1))
        x = int(rng.integers(field.shape[1] - w + 1))
        return field[y:y + h, x:x + w]


# Per-part texture strength in the "real" style: (fine grain, medium blotches)
REAL_TEXTURE = {"sky": (0.0, 0.0), "building": (0.05, 0.07), "road": (0.10, 0.06),
                "lane": (0.08, 0.05), "crosswalk": (0.08, 0.05), "sidewalk": (0.08, 0.05),
                "terrain": (0.18, 0.15), "wall": (0.06, 0.08), "fence": (0.06, 0.06),
                "guardrail": (0.04, 0.04), "tree": (0.22, 0.2), "pole": (0.03, 0.03),
                "sign": (0.02, 0.02), "tlight": (0.02, 0.02), "car": (0.02, 0.03),
                "pedestrian": (0.06, 0.06), "bicyclist": (0.05, 0.05), "static": (0.05, 0.05)}
REAL_TEXTURE_LUT = np.array([REAL_TEXTURE[p] for p in PART_NAMES], np.float32)
GROUND_LUT = np.isin(np.arange(len(PART_NAMES)), [PART[p] for p in GROUND_PARTS])


def sky_gradient(img: np.ndarray, sky: np.ndarray, horizon: float, zenith_rgb,
                 horizon_rgb) -> None:
    h = img.shape[0]
    rows = np.arange(h, dtype=np.float32) + 0.5
    t = np.clip(1.0 - rows / max(horizon, 1.0), 0, 1)[:, None, None]
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
    look = {"zenith": jittered(rng, (60, 120, 215), 12),
            "horizon": jittered(rng, (170, 205, 240), 10),
            "saturation": 1.25, "tint": (1.0, 1.0, 1.0), "gain": 1.05}
    if weather == "CloudyNoon":
        look.update(zenith=(150, 160, 175), horizon=(200, 205, 212), saturation=1.05, gain=0.95)
    elif weather == "ClearSunset":
        look.update(zenith=(80, 110, 180), horizon=(250, 190, 140), tint=(1.08, 0.98, 0.86),
                    gain=0.95)
    return look


def real_look(rng, dusk: bool) -> dict:
    overcast = rng.random() < 0.75
    return {
        "zenith": jittered(rng, (205, 210, 215) if overcast else (130, 165, 205), 10),
        "horizon": jittered(rng, (235, 236, 236) if overcast else (205, 215, 225), 8),
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
        "zenith": jittered(rng, zenith, 30), "horizon": jittered(rng, horizon, 25),
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
