"""The generator: sequences of frames along random streets, rendered in the sim style and
written as IDDA, and in the real style written as CamVid, plus summary.json.

Seeding: sequence q draws its street and camera (and weather or look) from
default_rng([seed, D, q]), frame k of it the rest from default_rng([seed, D, q, k]), with
D = 1 for the sim domain and 2 for the real one; texture fields come from Textures(seed).
Same seed -> same bytes."""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from uda_seg_core.data import build_dataset
from uda_seg_core.data.preview import channel_stats
from uda_seg_core.data.synthetic.appearance import (
    SIM_STYLES,
    Textures,
    finish_real,
    finish_sim,
    randomise_materials,
    randomised_look,
    real_look,
    sim_look,
)
from uda_seg_core.data.synthetic.raster import compose, render_scene
from uda_seg_core.data.synthetic.streets import camera_lateral, make_camera, make_street
from uda_seg_core.data.synthetic.writers import (
    write_camvid_frame,
    write_class_dict,
    write_classes_info,
    write_idda_frame,
)

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


def camvid_size_for(size: tuple[int, int]) -> tuple[int, int]:
    """A 4:3 frame with about the pixel count of `size` (H, W); multiples of 8."""
    h = max(24, round(math.sqrt(size[0] * size[1] * 3 / 4) / 24) * 24)
    return h, h * 4 // 3


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
            cv, ground = render_scene(street, cam, k * spacing, k * spacing / 8.0, size,
                                      look["horizon"], shade)
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
                cv, ground = render_scene(street, cam, k * spacing, k * 1.0, size,
                                          look["horizon"], shade)
                img, parts, emit = compose(cv)
                rgb = finish_real(img, parts, cv.ids, emit, ground, cam.horizon, look, textures,
                                  frng)
                name = f"{prefix}_{fmt.format(first + k * FRAME_STEP)}"
                write_camvid_frame(root, split, name, rgb, parts)
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
        raise FileExistsError(f"{out} already holds idda/ or camvid/ that make-synthetic did "
                              f"not write (no summary.json); choose another --out or remove them")
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
        raise ValueError("need --num-source >= 1 and --num-target >= 3 "
                         "(one frame per CamVid split)")
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
            "camvid": channel_stats(build_dataset("camvid", out / "camvid",
                                                  ["train", "val", "test"]), stats_frames),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["frames_per_cpu_second"] = {
        "idda": round(n_src / max(mid - start, 1e-9), 1),
        "camvid": round(sum(counts.values()) / max(end - mid, 1e-9), 1)}
    return summary
