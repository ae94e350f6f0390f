"""The experiment files (study/experiments.py, config/experiments/): one per row of Tables
I-IV, strict, holding only differences, with the paper's settings."""
from __future__ import annotations

import pytest
import yaml

from helpers import ROOT
from uda_seg_core.config import Config, load_config, to_dict
from uda_seg_core.study.experiments import (
    EXPERIMENTS,
    EXTRA,
    TABLE_I,
    TABLE_II,
    TABLE_III,
    TABLE_IV,
)

FOLDER = ROOT / "config" / "experiments"
NAMES = [e.name for e in EXPERIMENTS]


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_one_file_per_experiment_and_every_table_row_has_one():
    files = {p.stem for p in FOLDER.glob("*.yaml")}
    assert files == {*NAMES, "reduced"}
    rows = [name for name, _, _ in TABLE_I + TABLE_II + TABLE_III + TABLE_IV + EXTRA]
    assert set(rows) <= set(NAMES)
    assert len(TABLE_I) == 4 and len(TABLE_II) == 5 and len(TABLE_III) == 6 and len(TABLE_IV) == 3


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_file_loads_strictly_and_holds_only_differences(path):
    cfg = load_config(path)
    defaults = leaves(to_dict(Config()))
    written = leaves(yaml.safe_load(path.read_text()) or {})
    assert written, f"{path.name} is empty"
    for key in written:
        assert key in defaults
        # the reduced profile is laid over the experiment files, so it may restate a default
        if path.stem != "reduced":
            assert leaves(to_dict(cfg))[key] != defaults[key], (
                f"{path.name}: {key} repeats the default")
    assert path.read_text().startswith("# "), "each file says which row it is"


def test_paper_settings():
    for name in NAMES:
        cfg = load_config(FOLDER / f"{name}.yaml")
        assert cfg.data.crop_size == [720, 960] and cfg.model.pretrained == "torchvision"
        if name.startswith("table4"):
            assert (cfg.model.backbone, cfg.train.epochs) == ("resnet18", 50)
        else:
            assert (cfg.model.backbone, cfg.train.epochs) == ("resnet101", 100)
    ub = load_config(FOLDER / "table1_upper_bound.yaml")
    assert (ub.data.source_format, ub.data.source_root) == (ub.data.target_format,
                                                            ub.data.target_root)
    fixed, inc_drop = (load_config(FOLDER / f"table2_{n}.yaml").adapt
                       for n in ("fixed_pruning", "incremental_pruning_dropout"))
    assert (fixed.prune, fixed.prune_amount, fixed.dropout) == ("fixed", 0.2, 0.0)
    assert (inc_drop.prune, inc_drop.prune_rate, inc_drop.dropout) == ("incremental", 0.005, 0.01)
    assert load_config(FOLDER / "table1_dwd.yaml").adapt.discriminator == "dwd"
    aug4 = load_config(FOLDER / "table3_aug4.yaml").augmentation
    assert (aug4.hflip, aug4.blur_sigma, aug4.noise_std) == (0.0, [0.0, 3.0], [0.0, 12.75])
    assert load_config(FOLDER / "table4_adam.yaml").train.optimizer == "adam"
