"""How hard does the adversarial term push? Gradient sizes of an adapted run's two terms.

    .venv/bin/python benchmarks/adversarial_gradient.py --run runs/real_study/fcd_s0 \\
        [--batches 8] [--lambdas 0.001,0.01,0.1]

A thin wrapper around `uda_seg_core.study.gradients.measure_adversarial_gradient` (the
measurement `uda-seg real-study` also records for every row with a discriminator): the
run's last.pt, `--batches` source and target batches read the way the run did, the median
|grad L_seg| and lambda_adv |grad L_adv| on the segmentation network for each lambda (the
run's own first), their ratio, the cosine between the two gradients, and D's mean
probability of 'target' on each domain's predictions. Prints a markdown table; nothing is
trained.
"""
from __future__ import annotations

import argparse

from uda_seg_core.reporting import markdown_table
from uda_seg_core.study.gradients import measure_adversarial_gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="an `uda-seg adapt` run folder (last.pt)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--lambdas", default="", help="extra lambda_adv values, e.g. 0.01,0.1")
    args = parser.parse_args()
    extra = [float(v) for v in args.lambdas.split(",") if v]
    m = measure_adversarial_gradient(args.run, batches=args.batches, lambdas=extra)
    seg, adv = m["seg_grad_norm"], m["adv_grad_norm"]
    print(f"{args.run}: {m['discriminator']}, {m['batches']} batches of {m['batch_size']}, "
          f"crops {m['crop_size'][0]}x{m['crop_size'][1]}")
    print(f"D's mean P(target): on source predictions {m['d_p_target_on_source']:.3f}, on "
          f"target predictions {m['d_p_target_on_target']:.3f}")
    print(f"cosine(grad L_seg, grad L_adv) median {m['cosine']:+.3f}\n")
    print(markdown_table(
        ["lambda_adv", "median |grad L_seg|", "median |lambda grad L_adv|", "ratio"],
        [[lam, f"{seg:.3g}", f"{float(lam) * adv:.3g}", f"{ratio:.4f}"]
         for lam, ratio in m["ratios"].items()], align="rrrr"))


if __name__ == "__main__":
    main()
