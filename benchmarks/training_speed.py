"""How fast can one CPU training step of the real-data profile be? Measure the options.

    .venv/bin/python benchmarks/training_speed.py --camvid ../shared/data/CamVid-SegNet
    .venv/bin/python benchmarks/training_speed.py --repeats 8 --no-compile     # quicker

The step is config/real_cpu.yaml's: BiSeNet-R18, its batch of crop_size crops (8 x
192x256), eq. 4 with the ce+dice term, SGD. In one process, after warm-up, interleaved
(every repeat runs every case once, in a shuffled order, so machine load falls on all
alike), median seconds per step:

- memory format: contiguous (NCHW) vs channels_last;
- torch.compile (Inductor, default mode) vs eager, each format;
- intra-op threads: 2 vs 1 (the step alone);
- the adversarial step (G + FCD) vs the supervised one: what an adaptation iteration costs;
- data: CPU seconds to read + augment one batch of real frames in the main process (what a
  DataLoader worker spends per batch, stolen from the same 2 cores), vs the step.

Ratios are within this run; absolute figures depend on the load of the machine (printed).
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

from uda_seg_core.config import input_normalisation, load_config
from uda_seg_core.data import build_dataset
from uda_seg_core.data.transforms import build_transforms
from uda_seg_core.losses import segmentation_loss
from uda_seg_core.models import build_discriminator, build_segmentation_model
from uda_seg_core.reporting import machine_description, markdown_table
from uda_seg_core.train.adversarial import adversarial_step
from uda_seg_core.train.optim import build_discriminator_optimizer, build_segmentation_optimizer


def supervised(model, optimizer, images, labels, loss: str) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        total, _ = segmentation_loss(model(images, aux_mode="train"), labels, loss=loss)
        total.backward()
        optimizer.step()
    return step


def build_cases(cfg, compile_: bool, threads: int) -> dict[str, Callable[[], None]]:
    h, w = cfg.data.crop_size
    b = cfg.train.batch_size
    torch.manual_seed(0)
    images = torch.randn(b, 3, h, w)
    labels = torch.randint(0, 12, (b, h, w))
    cases: dict[str, Callable[[], None]] = {}
    for fmt in ("contiguous", "channels_last"):
        for compiled in ((False, True) if compile_ else (False,)):
            model = build_segmentation_model(cfg.model).train()
            x = images
            if fmt == "channels_last":
                model = model.to(memory_format=torch.channels_last)
                x = images.contiguous(memory_format=torch.channels_last)
            net = torch.compile(model) if compiled else model
            opt = build_segmentation_optimizer(model, cfg)
            name = f"{fmt}{' + compile' if compiled else ''}"
            cases[name] = with_threads(supervised(net, opt, x, labels, cfg.train.loss), threads)
    model = build_segmentation_model(cfg.model).train()
    cases["contiguous, 1 thread"] = with_threads(
        supervised(model, build_segmentation_optimizer(model, cfg), images, labels,
                   cfg.train.loss), 1)
    cases["adversarial step (G + FCD)"] = with_threads(adversarial_case(cfg, images, labels),
                                                       threads)
    return cases


def adversarial_case(cfg, images, labels) -> Callable[[], None]:
    model = build_segmentation_model(cfg.model).train()
    d = build_discriminator("fcd", cfg.model.num_classes).train()
    opt_g, opt_d = build_segmentation_optimizer(model, cfg), build_discriminator_optimizer(d, cfg)
    source = {"image": images, "label": labels}
    target = {"image": images.flip(-1)}
    return lambda: adversarial_step(model, d, opt_g, opt_d, source, target, cfg)


def with_threads(fn: Callable[[], None], threads: int) -> Callable[[], None]:
    def run() -> None:
        torch.set_num_threads(threads)
        fn()
    return run


def data_case(cfg, camvid: str) -> Callable[[], None]:
    """Read + augment one batch of real frames (what a loader worker does per step)."""
    transform = build_transforms(cfg.augmentation, cfg.data, train=True, seed=0,
                                 normalisation=input_normalisation(cfg))
    dataset = build_dataset("auto", camvid, "train", transform=transform)
    rng = random.Random(0)

    def batch() -> None:
        items = [dataset[rng.randrange(len(dataset))] for _ in range(cfg.train.batch_size)]
        torch.stack([i["image"] for i in items])
    return batch


def measure(cases: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict:
    for name, fn in cases.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        print(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    for r in range(repeats):
        random.Random(r).shuffle(order)
        for name in order:
            wall, proc = time.perf_counter(), time.process_time()
            cases[name]()
            times[name].append(time.perf_counter() - wall)
            cpu[name].append(time.process_time() - proc)
    return {name: (statistics.median(times[name]), statistics.median(cpu[name]))
            for name in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/real_cpu.yaml")
    parser.add_argument("--camvid", help="a CamVid folder for the data case (skipped without)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile cases")
    args = parser.parse_args()
    cfg = load_config(args.config, ["data.num_workers=0"])
    cases = build_cases(cfg, not args.no_compile, args.threads)
    if args.camvid:
        cases["data: read + augment one batch"] = with_threads(data_case(cfg, args.camvid),
                                                              args.threads)
    m = machine_description()
    print(f"{m['cpu']}, {m['cores']} cores, load average {m['loadavg_start']}; torch "
          f"{m['torch']}; batch "
          f"{cfg.train.batch_size} x {cfg.data.crop_size[0]}x{cfg.data.crop_size[1]}; "
          f"{args.threads} threads unless said", flush=True)
    results = measure(cases, args.repeats, args.warmup)
    base = results["contiguous"][0]
    print("\n" + markdown_table(
        ["case", "median s/step", "CPU s", "vs contiguous eager"],
        [[name, f"{wall:.3f}", f"{proc:.3f}", f"{wall / base:.2f}x"]
         for name, (wall, proc) in results.items()]))


if __name__ == "__main__":
    main()
