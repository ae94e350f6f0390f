"""Networks of the paper: BiSeNet (segmentation) and the output-space discriminators.

    from uda_seg_core.models import build_segmentation_model, build_discriminator, load_model
    model = build_segmentation_model(cfg.model)            # BiSeNet (ResNet or EfficientNet-Lite)
    d = build_discriminator(cfg.adapt.discriminator, cfg.model.num_classes,
                            width=cfg.adapt.d_width, dropout=cfg.adapt.dropout, rank=cfg.adapt.rank)
    model, ckpt = load_model("runs/x/best.pt")             # the network a checkpoint describes
"""
from __future__ import annotations

from uda_seg_core.models.backbones import (
    BACKBONES,
    EFFICIENTNET_LITES,
    PretrainedWeightsError,
    freeze_same_padding,
    has_dynamic_padding,
    load_backbone_weights,
    weight_package_file,
)
from uda_seg_core.models.bisenet import (
    AUX_MODES,
    BiSeNet,
    ClassIds,
    build_segmentation_model,
    class_ids,
)
from uda_seg_core.models.complexity import count_macs, count_parameters, macs_per_module
from uda_seg_core.models.discriminators import DISCRIMINATORS, build_discriminator
from uda_seg_core.models.loading import (
    build_model_from_checkpoint,
    fit_to_state_dict,
    init_from_checkpoint,
    load_model,
)

__all__ = [
    "AUX_MODES",
    "BACKBONES",
    "DISCRIMINATORS",
    "EFFICIENTNET_LITES",
    "BiSeNet",
    "PretrainedWeightsError",
    "ClassIds",
    "build_discriminator",
    "build_model_from_checkpoint",
    "build_segmentation_model",
    "class_ids",
    "count_macs",
    "count_parameters",
    "fit_to_state_dict",
    "freeze_same_padding",
    "has_dynamic_padding",
    "init_from_checkpoint",
    "load_backbone_weights",
    "load_model",
    "macs_per_module",
    "weight_package_file",
]
