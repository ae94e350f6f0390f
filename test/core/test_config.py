"""The config tree is strict: unknown keys and wrong types fail, naming the key; settings
with a fixed set of values are checked when the config is built, against the registries
that implement them, before a job writes anything."""
from __future__ import annotations

import typing

import pytest
import torch

from helpers.fixtures import tiny_overrides, write_domains
from uda_seg_core import config as C
from uda_seg_core.cli import main
from uda_seg_core.config import (
    Config,
    ConfigError,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)
from uda_seg_core.data import DATASETS, FORMAT_CHOICES
from uda_seg_core.losses import SEGMENTATION_LOSSES
from uda_seg_core.models import BACKBONES, DISCRIMINATORS
from uda_seg_core.pruning import PRUNE_MODES
from uda_seg_core.train.optim import OPTIMIZERS
from uda_seg_core.train.target_terms import TARGET_LOSSES


def test_defaults_follow_the_paper():
    cfg = Config()
    assert cfg.train.optimizer == "sgd" and cfg.train.lr == 2.5e-2
    assert cfg.train.momentum == 0.9 and cfg.train.weight_decay == 1e-4
    assert cfg.train.batch_size == 4 and cfg.train.poly_power == 0.9
    assert cfg.adapt.lambda_adv == 0.001 and cfg.adapt.d_lr == 1e-4
    assert cfg.adapt.d_betas == [0.9, 0.99]
    assert cfg.model.num_classes == 12
    assert cfg.optimise.sparsities[0] == 0.0 and cfg.optimise.sparsities[-1] == 0.85
    assert len(cfg.optimise.sparsities) == 18


def test_yaml_holds_only_differences_and_overrides_win(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: 0.01\n  epochs: 3\nadapt:\n  discriminator: dwd\n")
    cfg = load_config(path, ["train.lr=0.5", "model.backbone=resnet101", "data.crop_size=[64, 96]"])
    assert cfg.train.lr == 0.5
    assert cfg.train.epochs == 3
    assert cfg.adapt.discriminator == "dwd"
    assert cfg.model.backbone == "resnet101"
    assert cfg.data.crop_size == [64, 96]
    assert cfg.train.momentum == 0.9  # untouched default


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.lrr.*did you mean 'lr'"):
        load_config(None, ["train.lrr=0.1"])
    path = tmp_path / "bad.yaml"
    path.write_text("adpat:\n  lambda_adv: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*adpat.*did you mean 'adapt'"):
        load_config(path)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.batch_size=four", "train.batch_size"),
        ("train.batch_size=2.5", "train.batch_size"),
        ("train.deterministic=3", "train.deterministic"),
        ("data.crop_size=720", "data.crop_size"),
        ("data.crop_size=[720, x]", r"data.crop_size\[1\]"),
        ("model=resnet18", "model"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_int_widens_to_float_but_bool_is_not_an_int():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError):
        load_config(None, ["train.epochs=true"])


def test_exponent_without_a_dot_is_a_float_not_a_string(tmp_path):
    # YAML 1.1 reads 1e-4 as the string '1e-4': `--set train.lr=1e-4` was refused.
    assert load_config(None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 5E-3\n")
    assert load_config(path).train.lr == pytest.approx(5e-3)
    with pytest.raises(ConfigError, match="train.lr"):
        load_config(None, ["train.lr=1e-4x"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(None, ["train.batch_size=1e3"])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.lr")
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config(bad)


def test_round_trip_through_dict():
    cfg = load_config(None, ["adapt.discriminator=tfd", "train.seed=7"])
    again = from_dict(to_dict(cfg))
    assert again == cfg


def test_every_registry_offers_exactly_the_config_choices():
    """Guards against a registry entry the config refuses, or a config choice that has no
    implementation (it would pass load_config and fail mid-run)."""
    pairs = [(C.Backbone, BACKBONES), (C.DiscriminatorName, ("none", *DISCRIMINATORS)),
             (C.TargetLossName, TARGET_LOSSES),
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
