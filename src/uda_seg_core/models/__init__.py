"""Networks of the paper: BiSeNet (segmentation) and the output-space discriminators.

    from uda_seg_core.models import build_segmentation_model, build_discriminator
    model = build_segmentation_model(cfg.model)            # BiSeNet
    d = build_discriminator(cfg.adapt.discriminator, cfg.model.num_classes,
                            width=cfg.adapt.d_width, dropout=cfg.adapt.dropout, rank=cfg.adapt.rank)
"""
from __future__ import annotations

from uda_seg_core.config import ModelConfig
from uda_seg_core.models.bisenet import (
    AUX_MODES,
    BACKBONES,
    BiSeNet,
    load_backbone_weights,
)
from uda_seg_core.models.complexity import count_macs, count_parameters, macs_per_module
from uda_seg_core.models.discriminators import DISCRIMINATORS, build_discriminator

MODELS = {"bisenet": BiSeNet}


def build_segmentation_model(model_cfg: ModelConfig) -> BiSeNet:
    return BiSeNet(
        num_classes=model_cfg.num_classes, backbone=model_cfg.backbone, pretrained=model_cfg.pretrained
    )


__all__ = [
    "AUX_MODES",
    "BACKBONES",
    "DISCRIMINATORS",
    "MODELS",
    "BiSeNet",
    "build_discriminator",
    "build_segmentation_model",
    "count_macs",
    "count_parameters",
    "load_backbone_weights",
    "macs_per_module",
]
