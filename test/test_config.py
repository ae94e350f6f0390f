"""The config tree is strict: unknown keys and wrong types fail, naming the key."""
import pytest

from uda_seg_core.config import (
    Config,
    ConfigError,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)


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
