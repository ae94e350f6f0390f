"""BatchNorm re-estimation as a library function (train.batchnorm)."""
from __future__ import annotations

import torch
from train_helpers import single_thread, tiny_config, write_domains  # noqa: F401

from uda_seg_core.models import build_segmentation_model
from uda_seg_core.train.batchnorm import recalibrate_batchnorm


def test_target_only_reestimation_needs_no_source_data(tmp_path, single_thread):  # noqa: F811
    """Guards against re-estimation that always reads the source domain: adapting a
    network's normalisation to the target must work where only target images exist."""
    _, camvid = write_domains(tmp_path, n=2)
    cfg = tiny_config(tmp_path, tmp_path / "no_source_here", camvid,
                      **{"data.target_format": "camvid", "train.batch_size": 1})
    torch.manual_seed(0)
    model = build_segmentation_model(cfg.model)
    before = model.spatial_path[0][1].running_mean.clone()
    layers = recalibrate_batchnorm(model, cfg, batches=2, device="cpu", with_target=True,
                                   source=False)
    assert layers > 0
    assert not torch.equal(before, model.spatial_path[0][1].running_mean)
    assert not model.training  # left in eval mode, ready to measure or save
