"""How hard does the adversarial term push? Gradient sizes of a finished adaptation run's two
terms, measured on its last.pt (`benchmarks/adversarial_gradient.py` prints them; `uda-seg
real-study` records them for every row with a discriminator).

`measure_adversarial_gradient(run_dir)` loads the run's last.pt (the segmentation network G
and its discriminator D at the end of adaptation) and its config, reads `batches` source and
target batches the way the run did (its loaders, from iteration 0), and measures, on G's
parameters:

- |grad L_seg| (eq. 4, on the source batch) and |grad L_adv| (eq. 5, on the target batch),
  each the median over the batches; lambda_adv |grad L_adv| / |grad L_seg| at the run's own
  lambda_adv (`ratio`) and at any others asked for (`ratios`); the median cosine between
  the two gradients;
- what D does: its mean probability of 'target' on source and on target predictions.

If lambda_adv |grad L_adv| is a small fraction of |grad L_seg|, the adversarial term cannot
move G much in a short stage, whatever D learns. Nothing is trained; G runs in training mode
(BatchNorm on batch statistics, as in the run's steps), D in evaluation mode and frozen.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.config import ConfigError, load_config
from uda_seg_core.losses import adversarial_loss
from uda_seg_core.models.loading import load_model
from uda_seg_core.runtime import DistInfo
from uda_seg_core.train.adversarial import build_adversarial_discriminator
from uda_seg_core.train.loaders import source_loader, target_loader
from uda_seg_core.train.supervised import source_loss

GRADIENT_FILE = "adversarial_gradient.json"  # where the study keeps a run's measurement


def flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """d loss / d params as one vector (zeros for parameters the loss does not reach)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


def measure_adversarial_gradient(run_dir: str | Path, batches: int = 8,
                                 lambdas: Sequence[float] = ()) -> dict:
    """The gradient sizes of L_seg and L_adv on G at the run's last.pt (see the module
    docstring); CPU, no worker processes. `lambdas`: extra lambda_adv values for `ratios`."""
    run = Path(run_dir)
    if batches < 1:
        raise ValueError("batches must be >= 1")
    cfg = load_config(run / "config.yaml", ["data.num_workers=0"])
    if cfg.adapt.discriminator == "none":
        raise ConfigError(f"{run}: adapt.discriminator=none: no discriminator, no L_adv to "
                          f"measure")
    ckpt = load_checkpoint(run / "last.pt")
    if "discriminator" not in (ckpt.get("modules") or {}):
        raise ConfigError(f"{run / 'last.pt'} holds no discriminator: not an `uda-seg adapt` "
                          f"run's last.pt")
    model, _ = load_model(run / "last.pt", map_location="cpu")
    model.train()
    d = build_adversarial_discriminator(cfg, torch.device("cpu"))
    d.load_state_dict(ckpt["modules"]["discriminator"])
    d.eval()
    for p in d.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    source, target = source_loader(cfg, DistInfo()), target_loader(cfg, DistInfo())
    seg_norms, adv_norms, cosines, d_src, d_tgt = [], [], [], [], []
    for _ in range(batches):
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
    own = cfg.adapt.lambda_adv
    return {
        "run": str(run), "discriminator": cfg.adapt.discriminator,
        "iteration": (ckpt.get("training_state") or {}).get("iteration"),
        "batches": batches, "batch_size": cfg.train.batch_size,
        "crop_size": list(cfg.data.crop_size),
        "lambda_adv": own,
        "seg_grad_norm": seg,  # median |grad L_seg|
        "adv_grad_norm": adv,  # median |grad L_adv|, unweighted
        "ratio": own * adv / seg if seg else None,  # lambda_adv |grad L_adv| / |grad L_seg|
        "ratios": {f"{lam:g}": lam * adv / seg if seg else None
                   for lam in dict.fromkeys([own, *lambdas])},
        "cosine": statistics.median(cosines),
        "d_p_target_on_source": statistics.fmean(d_src),
        "d_p_target_on_target": statistics.fmean(d_tgt),
    }
