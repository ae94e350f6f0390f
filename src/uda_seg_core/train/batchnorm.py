"""BatchNorm re-estimation: fresh running statistics from training batches, no weights changed.

    reestimate_batchnorm(model, image_batches)                 # any iterable of image batches
    recalibrate_batchnorm(model, cfg, batches=25, with_target=True)   # from cfg's data
    adapt_batchnorm("runs/x/best.pt", "data/CamVid", "runs/x/adapt_bn.pt", batches=40)

After structured pruning the stored means and variances no longer describe what each
layer receives and the network's output collapses; fresh statistics bring much of it
back before any fine-tune. The same holds for a network moved to another domain: with
target batches only it adapts its normalisation to that domain: `adapt_batchnorm`, the
`uda-seg adapt-bn` command, the cheapest baseline of the adaptation study.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from uda_seg_core.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from uda_seg_core.config import Config
from uda_seg_core.data import DatasetFormatError
from uda_seg_core.models import build_model_from_checkpoint
from uda_seg_core.runtime import DistInfo, resolve_device
from uda_seg_core.train.loaders import LoaderCycle, source_loader, target_loader


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, image_batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them as the cumulative
    average over `image_batches` (normalised images on the model's device), in training
    mode with all heads (the auxiliary heads' norms too). Returns the number of layers."""
    norms = batchnorm_layers(model)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        for images in image_batches:
            model(images, aux_mode="train")
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


def training_loaders(cfg: Config, source: bool = True, target: bool = False) -> list[LoaderCycle]:
    """Batch streams of the domains asked for (source labelled, target unlabelled); a
    missing dataset names the settings that point at it."""
    try:
        loaders = [source_loader(cfg, DistInfo())] if source else []
        if target:
            loaders.append(target_loader(cfg, DistInfo()))
    except DatasetFormatError as exc:
        raise DatasetFormatError(
            f"re-estimating BatchNorm statistics needs the training images: {exc}. Point "
            f"data.source_root / data.target_root at them, or pass --bn-batches 0 to skip"
        ) from exc
    if not loaders:
        raise ValueError("BatchNorm re-estimation needs the source or the target domain")
    return loaders


def recalibrate_batchnorm(model: nn.Module, cfg: Config, batches: int, device: str = "auto",
                          with_target: bool = False, source: bool = True) -> int:
    """Re-estimate the BatchNorm statistics of `model` on `batches` training batches of the
    config's data: source batches, alternating with unlabelled target batches when
    `with_target` (an adapted network saw both domains in training mode, so its statistics
    describe both); `source=False, with_target=True` re-estimates them on the target alone
    (adapting a source-trained network's normalisation to the target domain). Returns the
    number of layers (0 when `batches` is 0)."""
    if batches <= 0 or not batchnorm_layers(model):
        return 0
    dev = torch.device(resolve_device(device))
    loaders = training_loaders(cfg, source=source, target=with_target)
    model.to(dev)
    images = (loaders[i % len(loaders)].next()["image"].to(dev, non_blocking=True)
              for i in range(batches))
    return reestimate_batchnorm(model, images)


def adapt_batchnorm(checkpoint: str | Path, target_root: str | Path, out: str | Path, *,
                    batches: int = 40, sequences: Sequence[str] = (), device: str = "auto",
                    seed: int = 0) -> dict:
    """`uda-seg adapt-bn`: the checkpoint's network with BatchNorm statistics re-estimated
    on unlabelled target frames alone (AdaBN-style; no weight changes, no labels, seconds
    of forward passes), written as a new checkpoint. The target frames go through the
    checkpoint's own training transform (scales, crop, augmentations) with `seed`, so the
    statistics describe what the network saw in training, moved to the target domain.
    Returns {'out', 'layers', 'batches', 'target_root', 'sequences'}."""
    ckpt = load_checkpoint(checkpoint)
    model = build_model_from_checkpoint(ckpt, checkpoint)
    cfg = checkpoint_config(ckpt)
    cfg.data.target_root = str(target_root)
    cfg.data.target_format = "auto"
    cfg.data.target_sequences = list(sequences)
    cfg.data.num_workers = 0
    cfg.train.seed = seed
    layers = recalibrate_batchnorm(model, cfg, batches, device=device, with_target=True,
                                   source=False)
    if layers == 0:
        raise ValueError(f"{checkpoint}: the network has no BatchNorm layer to re-estimate"
                         if batches > 0 else "--batches must be > 0")
    provenance = {"adapted_from": str(checkpoint), "adapt_bn": {
        "target_root": str(target_root), "sequences": list(sequences), "batches": batches,
        "batch_size": cfg.train.batch_size, "seed": seed}}
    save_checkpoint(out, model.cpu(), cfg, **provenance)
    return {"out": str(out), "layers": layers, "batches": batches,
            "target_root": str(target_root), "sequences": list(sequences)}
