"""How hard does the adversarial term push? Gradient sizes of an adapted run's two terms.

    .venv/bin/python benchmarks/adversarial_gradient.py --run runs/real_study/fcd_s0 \\
        [--batches 8] [--lambdas 0.001,0.01,0.1]

Loads the run's last.pt (the segmentation network G and its discriminator D at the end of
adaptation) and its config, reads `--batches` source and target batches the way the run
did, and measures, on G's parameters:

- |grad L_seg| (eq. 4, on the source batch) and |grad lambda_adv L_adv| (eq. 5, on the
  target batch) for each lambda (the run's own first), their ratio, and the cosine between
  the two gradients;
- what D does: its mean probability of 'target' on source and on target predictions.

If lambda_adv |grad L_adv| is a small fraction of |grad L_seg|, the adversarial term cannot
move G much in a short stage, whatever D learns: then adaptation with D and the
lambda_adv = 0 control end alike. Prints a markdown table; nothing is trained.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.config import load_config
from uda_seg_core.losses import adversarial_loss
from uda_seg_core.models.loading import load_model
from uda_seg_core.reporting import markdown_table
from uda_seg_core.runtime import DistInfo
from uda_seg_core.train.adversarial import build_adversarial_discriminator
from uda_seg_core.train.loaders import source_loader, target_loader
from uda_seg_core.train.supervised import source_loss


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="an `uda-seg adapt` run folder (last.pt)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--lambdas", default="", help="extra lambda_adv values, e.g. 0.01,0.1")
    args = parser.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml", ["data.num_workers=0"])
    model, _ = load_model(run / "last.pt", map_location="cpu")
    model.train()
    ckpt = load_checkpoint(run / "last.pt")
    d = build_adversarial_discriminator(cfg, torch.device("cpu"))
    d.load_state_dict(ckpt["modules"]["discriminator"])
    d.eval()
    for p in d.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    lambdas = [cfg.adapt.lambda_adv, *(float(v) for v in args.lambdas.split(",") if v)]
    source, target = source_loader(cfg, DistInfo()), target_loader(cfg, DistInfo())
    seg_norms, adv_norms, cosines, d_src, d_tgt = [], [], [], [], []
    for _ in range(args.batches):
        s, t = source.next(), target.next()
        loss_seg, _, logits_s = source_loss(model, s, cfg)
        g_seg = flat_grad(loss_seg, params)
        p_t = F.softmax(model(t["image"], aux_mode="eval").float(), dim=1)
        g_adv = flat_grad(adversarial_loss(d(p_t)), params)
        seg_norms.append(float(g_seg.norm()))
        adv_norms.append(float(g_adv.norm()))
        cosines.append(float(F.cosine_similarity(g_seg, g_adv, dim=0)))
        with torch.no_grad():
            d_src.append(float(torch.sigmoid(d(F.softmax(logits_s.float(), 1))).mean()))
            d_tgt.append(float(torch.sigmoid(d(p_t)).mean()))
    seg, adv = statistics.median(seg_norms), statistics.median(adv_norms)
    print(f"{run}: {cfg.adapt.discriminator}, {args.batches} batches of "
          f"{cfg.train.batch_size}, crops {cfg.data.crop_size[0]}x{cfg.data.crop_size[1]}")
    print(f"D's mean P(target): on source predictions {statistics.fmean(d_src):.3f}, on "
          f"target predictions {statistics.fmean(d_tgt):.3f}")
    print(f"cosine(grad L_seg, grad L_adv) median {statistics.median(cosines):+.3f}\n")
    print(markdown_table(
        ["lambda_adv", "median |grad L_seg|", "median |lambda grad L_adv|", "ratio"],
        [[f"{lam:g}", f"{seg:.3g}", f"{lam * adv:.3g}", f"{lam * adv / seg:.4f}"]
         for lam in lambdas], align="rrrr"))


if __name__ == "__main__":
    main()
