"""`uda-seg make-synthetic`: write the synthetic two-domain dataset (IDDA + CamVid formats).

    uda-seg make-synthetic --out data/synthetic [--seed N] [--size HxW]
        [--num-source N] [--num-target N] [--sim-style carla|randomised]

`--sim-style randomised` draws the sim (IDDA-format) frames with domain randomisation
(sky, lighting, colour cast, textures, blur, noise, traffic side, camera height): the
source for adaptation to real CamVid frames (`uda-seg real-study`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from uda_seg_core.commands.common import size_type
from uda_seg_core.data.synthetic import SIM_STYLES, make_synthetic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/synthetic",
                        help="output folder (default: data/synthetic)")
    parser.add_argument("--seed", type=int, default=0, help="same seed -> same bytes (default 0)")
    parser.add_argument("--size", type=size_type, default=(240, 320),
                        help="IDDA-style frame size HxW; CamVid frames are 4:3 of about the same "
                             "area (default 240x320)")
    parser.add_argument("--num-source", type=int, default=200,
                        help="sim (IDDA format) frames (default 200)")
    parser.add_argument("--num-target", type=int, default=200,
                        help="real (CamVid format) frames, split 60/20/20 per sequence (default "
                             "200)")
    parser.add_argument("--stats-frames", type=int, default=32,
                        help="frames per domain for the appearance statistics (0 = skip)")
    parser.add_argument("--sim-style", choices=SIM_STYLES, default="carla",
                        help="carla: flat CARLA-like shading (default); randomised: domain "
                             "randomisation of every sim frame's appearance, for sim -> real")


def format_stats(name: str, stats: dict) -> str:
    mean = "/".join(f"{v:.0f}" for v in stats["mean"])
    std = "/".join(f"{v:.0f}" for v in stats["std"])
    return (f"  {name:7s} mean RGB {mean}  std RGB {std}  saturation {stats['saturation']:.0f}  "
            f"gradient {stats['gradient']:.1f}  high-freq {stats['high_freq']:.2f}")


def run(args: argparse.Namespace) -> int:
    summary = make_synthetic(args.out, args.seed, args.size, args.num_source, args.num_target,
                             args.stats_frames, args.sim_style)
    fps = summary["frames_per_cpu_second"]
    cam = summary["camvid"]
    print(f"wrote {summary['idda']['frames']} sim frames ({args.size[0]}x{args.size[1]}) to "
          f"{Path(args.out) / 'idda'} at {fps['idda']} frames per CPU-second")
    print(f"wrote {sum(cam['frames'].values())} real frames ({cam['size'][0]}x{cam['size'][1]}; "
          + ", ".join(f"{k} {v}" for k, v in cam["frames"].items())
          + f") to {Path(args.out) / 'camvid'} at {fps['camvid']} frames per CPU-second")
    if "appearance" in summary:
        print("appearance gap (per-channel statistics, 0-255 scale):")
        for name, stats in summary["appearance"].items():
            print(format_stats(name, stats))
    print("numbers measured on this synthetic data are not CamVid numbers")
    return 0
