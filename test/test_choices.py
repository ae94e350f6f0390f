"""Settings with a fixed set of values are checked when the config is built, against the
registries that implement them, before a job writes anything."""
from __future__ import annotations

import typing

import pytest
import torch

from helpers.fixtures import tiny_overrides, write_domains
from uda_seg_core import config as C
from uda_seg_core.cli import main
from uda_seg_core.data import DATASETS, FORMAT_CHOICES
from uda_seg_core.losses import SEGMENTATION_LOSSES
from uda_seg_core.models import BACKBONES, DISCRIMINATORS
from uda_seg_core.pruning import PRUNE_MODES
from uda_seg_core.train.optim import OPTIMIZERS


def test_every_registry_offers_exactly_the_config_choices():
    """Guards against a registry entry the config refuses, or a config choice that has no
    implementation (it would pass load_config and fail mid-run)."""
    pairs = [(C.Backbone, BACKBONES), (C.DiscriminatorName, DISCRIMINATORS),
             (C.OptimizerName, OPTIMIZERS), (C.SegmentationLossName, SEGMENTATION_LOSSES),
             (C.PruneMode, PRUNE_MODES), (C.DatasetFormat, ("auto", *DATASETS))]
    for choices, registry in pairs:
        assert set(typing.get_args(choices)) == set(registry)
    assert tuple(typing.get_args(C.DatasetFormat)) == FORMAT_CHOICES


@pytest.mark.parametrize("override, choices", [
    ("adapt.discriminator=xyz", "fcd, tfd, dwd, cpd"),
    ("model.backbone=xyz", "resnet18, resnet34, resnet50, resnet101"),
    ("train.optimizer=xyz", "sgd, adam, rmsprop"),
    ("train.loss=xyz", "dice, dice_per_class, ce, ce+dice"),
    ("data.target_format=xyz", "auto, camvid, camvid_segnet, idda"),
    ("train.device=xyz", "auto, cpu, cuda or cuda:N"),
])
def test_a_bad_choice_is_one_line_naming_it_and_nothing_is_created(tmp_path, monkeypatch, capsys,
                                                                   override, choices):
    """Guards against `uda-seg adapt adapt.discriminator=xyz` creating the run directory
    and dying later with a traceback (the bug before choices were checked on load)."""
    monkeypatch.chdir(tmp_path)
    assert main(["adapt", override, f"train.out_dir={tmp_path / 'runs'}"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "xyz" in err[0] and choices in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_device_that_is_not_there_is_refused_before_the_run_directory(tmp_path, capsys):
    """Guards against a training run that creates its directory and then finds no GPU."""
    idda, camvid = write_domains(tmp_path, n=2)
    assert main(["train", *tiny_overrides(tmp_path, idda, camvid, **{"train.device": "cuda"})]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'cuda'" in err[0] and "CUDA is not available" in err[0], err
    assert not (tmp_path / "runs").exists()
