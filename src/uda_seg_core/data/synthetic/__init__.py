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

The package, one job a module, each depending only on those above it:
  scene.py       scene parts (the generator's label space), Camera, Thing, Street
  streets.py     a random street with everything along it, and the camera driving it
  raster.py      one frame drawn as a map of materials (colour, part, emission)
  appearance.py  the sim and real finish of a frame; domain randomisation
  writers.py     IDDA and CamVid files, and the part -> dataset id / colour maps
  generate.py    the sequences, seeding and summary: make_synthetic
"""
from __future__ import annotations

from uda_seg_core.data.synthetic.appearance import SIM_STYLES, Textures
from uda_seg_core.data.synthetic.generate import (
    CAMVID_SEQUENCES,
    camvid_size_for,
    clear_previous_output,
    generate_source,
    generate_target,
    make_synthetic,
    split_counts,
)
from uda_seg_core.data.synthetic.scene import PART_NAMES

__all__ = [
    "CAMVID_SEQUENCES",
    "PART_NAMES",
    "SIM_STYLES",
    "Textures",
    "camvid_size_for",
    "clear_previous_output",
    "generate_source",
    "generate_target",
    "make_synthetic",
    "split_counts",
]
