"""The optimisers of Table IV and their parameter groups (train/optim.py)."""
from __future__ import annotations

import pytest

from uda_seg_core.config import Config, ConfigError
from uda_seg_core.models import build_segmentation_model
from uda_seg_core.train.optim import build_segmentation_optimizer


def test_segmentation_optimisers_of_table_iv():
    cfg = Config()
    cfg.model.backbone = "resnet18"
    model = build_segmentation_model(cfg.model)
    kinds = {}
    for name in ("sgd", "adam", "rmsprop"):
        cfg.train.optimizer = name
        opt = build_segmentation_optimizer(model, cfg)
        kinds[name] = type(opt).__name__
        decay = {g["name"]: g["weight_decay"] for g in opt.param_groups}
        assert decay == {"decay": 1e-4, "no_decay": 0.0}
    assert kinds == {"sgd": "SGD", "adam": "Adam", "rmsprop": "RMSprop"}
    cfg.train.optimizer = "lbfgs"
    with pytest.raises(ConfigError, match="train.optimizer"):
        build_segmentation_optimizer(model, cfg)
