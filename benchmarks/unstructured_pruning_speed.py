"""Does unstructured (L1 magnitude) pruning make training or inference faster? Measure it.

    .venv/bin/python benchmarks/unstructured_pruning_speed.py            # CPU, defaults
    .venv/bin/python benchmarks/unstructured_pruning_speed.py --device cuda --repeats 30

The paper expects zeroed weights to speed things up ("our network is able to pass along
zeros faster"). Dense convolution kernels (oneDNN / cuDNN) multiply every weight, zero or
not, so the expectation here is no change. Two cases, timed in one run and interleaved
(sparsity levels alternate inside every repeat) so that machine load affects them alike:

- inference: BiSeNet-R18 at 360x480, global pruning at sparsity 0, 0.5, 0.85, masks made
  permanent (the deployed case: plain tensors with zeros in them);
- training: the FCD discriminator's forward + backward on a 12-class softmax map, sparsity
  0 and 0.5, once with the mask made permanent (the paper's mode) and once with the mask
  kept attached (its forward pre-hook multiplies weight x mask on every call).

Prints the median time of each and its ratio to the unpruned model; a ratio near 1.00
means pruning changed nothing.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from uda_seg_core.models import BiSeNet, build_discriminator
from uda_seg_core.pruning import prune_global, remove_masks, sparsity_report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds). On a shared CPU the second is the steadier one:
    time spent waiting for another process's turn on a core is not counted."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _clock(device: torch.device) -> int:
    return 1 if device.type == "cpu" else 0  # CPU time means nothing for GPU kernels


def pruned_copy(model: torch.nn.Module, sparsity: float, keep_mask: bool) -> torch.nn.Module:
    model = copy.deepcopy(model)
    if sparsity > 0:
        prune_global(model, sparsity)
        if not keep_mask:
            remove_masks(model)
    return model


def interleaved(cases: dict[str, callable], repeats: int, warmup: int,
                device) -> dict[str, list[tuple[float, float]]]:
    """Median-friendly samples: every repeat runs every case once, in rotating order."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(timed(cases[name], device))
    return samples


def print_table(title: str, samples: dict[str, list[tuple[float, float]]], reference: str,
                clock: int) -> dict[str, float]:
    """Median, spread and ratio to `reference`; clock 0 = wall time, 1 = process CPU time
    (the ratios returned are of the clock the verdict uses)."""
    print(f"\n{title}")
    print(f"{'case':40s} {'wall ms':>8s} {'p10-p90':>13s} {'ratio':>6s} {'cpu ms':>8s} "
          f"{'ratio':>6s}")
    ref = [statistics.median(t[k] for t in samples[reference]) for k in (0, 1)]
    ratios = {}
    for name, times in samples.items():
        wall = sorted(t[0] * 1e3 for t in times)
        med = [statistics.median(t[k] for t in times) for k in (0, 1)]
        lo, hi = wall[len(wall) // 10], wall[min(len(wall) - 1, (9 * len(wall)) // 10)]
        r = [med[k] / ref[k] for k in (0, 1)]
        ratios[name] = r[clock]
        print(f"{name:40s} {med[0] * 1e3:8.1f} {lo:6.1f}-{hi:<6.1f} {r[0]:6.2f} "
              f"{med[1] * 1e3:8.1f} {r[1]:6.2f}")
    return ratios


def bench_inference(args, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    base = BiSeNet(num_classes=12, backbone="resnet18").eval().to(device)
    x = torch.randn(1, 3, *args.size, device=device)
    cases = {}
    for s in args.sparsities:
        model = pruned_copy(base, s, keep_mask=False)
        measured = sparsity_report(model)["sparsity"]

        def run(model=model):
            with torch.inference_mode():
                model(x)

        cases[f"BiSeNet-R18 sparsity {s:.2f} ({measured:.2f})"] = run
    samples = interleaved(cases, args.repeats, args.warmup, device)
    return print_table(f"Inference, BiSeNet-R18, 1x3x{args.size[0]}x{args.size[1]}, {device}",
                       samples, next(iter(cases)), _clock(device))


def bench_discriminator(args, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    base = build_discriminator("fcd", 12).to(device)
    x = torch.softmax(torch.randn(1, 12, *args.size, device=device), dim=1)
    cases = {}
    for s, keep in ((0.0, False), (0.5, False), (0.5, True)):
        d = pruned_copy(base, s, keep_mask=keep)

        def step(d=d):
            d.zero_grad(set_to_none=True)
            d(x).mean().backward()

        label = "mask kept" if keep else "mask removed"
        cases[f"FCD fwd+bwd sparsity {s:.2f} {label if s else ''}".rstrip()] = step
    samples = interleaved(cases, args.repeats, args.warmup, device)
    return print_table(f"Training step, FCD forward+backward, 1x12x{args.size[0]}x{args.size[1]}, "
                       f"{device}",
                       samples, next(iter(cases)), _clock(device))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.5, 0.85])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per case first")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="ratio deviation counted as noise")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads, "
          f"{args.repeats} interleaved repeats per case")
    inference = bench_inference(args, device)
    training = bench_discriminator(args, device)
    permanent = [r for name, r in [*inference.items(),
                                   *training.items()] if "mask kept" not in name]
    worst = max(abs(r - 1.0) for r in permanent)
    clock = "process CPU time" if device.type == "cpu" else "wall time"
    verdict = ("no speed-up: dense kernels still multiply the zeros" if worst < args.tolerance
               else "a change beyond the tolerance: look at the spread before believing it")
    print(f"\nPermanent unstructured zeros: largest deviation from the unpruned {clock} "
          f"{worst:.0%} (tolerance {args.tolerance:.0%}) -> {verdict}. A kept mask only adds the "
          f"weight x mask "
          "product to every call. Real speed-ups need structured (channel) pruning.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
