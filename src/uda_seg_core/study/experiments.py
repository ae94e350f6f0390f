"""The paper's study as data: which experiments exist, which table row each one is, the
paper's own numbers beside them, and Table III's augmentation settings.

`uda-seg reproduce` runs `EXPERIMENTS` (one file of config/experiments/ each) and
`uda-seg report` lays the results beside the paper's numbers in `TABLE_I` ... `TABLE_IV`.
Adding a row to the study = a YAML in config/experiments/, an `Experiment` here and the
row (with the paper's numbers, if it has some) in its table.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Experiment:
    name: str  # config/experiments/<name>.yaml and the run directory OUT/<name>
    command: str  # train | adapt


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table1_upper_bound", "train"),
    Experiment("table1_fcd", "adapt"),
    Experiment("table1_tfd", "adapt"),
    Experiment("table1_dwd", "adapt"),
    Experiment("table2_fixed_pruning", "adapt"),
    Experiment("table2_incremental_pruning", "adapt"),
    Experiment("table2_dropout", "adapt"),
    Experiment("table2_incremental_pruning_dropout", "adapt"),
    Experiment("table3_baseline", "train"),
    Experiment("table3_aug1", "train"),
    Experiment("table3_aug2", "train"),
    Experiment("table3_aug3", "train"),
    Experiment("table3_aug4", "train"),
    Experiment("table3_aug5", "train"),
    Experiment("table4_sgd", "train"),
    Experiment("table4_rmsprop", "train"),
    Experiment("table4_adam", "train"),
    Experiment("source_only", "train"),
)
# The paper prunes its "optimised model" after training: BiSeNet+FCD with incremental DTP.
PTP_EXPERIMENT = "table2_incremental_pruning"
PLAN_FILE = "plan.json"
SWEEP_DIR = "prune_sweep_test"


# The paper's numbers, per experiment (config/experiments/<name>.yaml): row label and values.
TABLE_I = [
    ("table1_upper_bound", "Upper Bound", {"accuracy": 0.882, "miou": 0.675, "time": "10:20"}),
    ("table1_fcd", "BiSeNet+FCD", {"accuracy": 0.689, "miou": 0.337, "time": "25:30"}),
    ("table1_tfd", "BiSeNet+TFD", {"accuracy": 0.664, "miou": 0.334, "time": "28:35"}),
    ("table1_dwd", "BiSeNet+DWD", {"accuracy": 0.618, "miou": 0.297, "time": "18:55"}),
]
TABLE_II = [
    ("table1_fcd", "Baseline (BiSeNet+FCD)",
     {"accuracy": 0.689, "miou": 0.337, "initial": "25:30", "final": "25:30"}),
    ("table2_fixed_pruning", "Fixed Pruning",
     {"accuracy": 0.652, "miou": 0.297, "initial": "25:30", "final": "23:10"}),
    ("table2_incremental_pruning", "Incremental Pruning",
     {"accuracy": 0.691, "miou": 0.371, "initial": "25:30", "final": "19:00"}),
    ("table2_dropout", "Dropout",
     {"accuracy": 0.688, "miou": 0.340, "initial": "21:30", "final": "21:30"}),
    ("table2_incremental_pruning_dropout", "Inc Pruning+Dropout",
     {"accuracy": 0.701, "miou": 0.341, "initial": "25:30", "final": "18:00"}),
]
TABLE_III = [
    ("table3_baseline", "Baseline", {"accuracy": 0.875, "miou": 0.648}),
    ("table3_aug1", "Aug 1", {"accuracy": 0.881, "miou": 0.668}),
    ("table3_aug2", "Aug 2", {"accuracy": 0.877, "miou": 0.666}),
    ("table3_aug3", "Aug 3", {"accuracy": 0.882, "miou": 0.675}),
    ("table3_aug4", "Aug 4", {"accuracy": 0.876, "miou": 0.624}),
    ("table3_aug5", "Aug 5", {"accuracy": 0.881, "miou": 0.656}),
]
TABLE_IV = [
    ("table4_sgd", "SGD", {"accuracy": 0.850, "miou": 0.546}),
    ("table4_rmsprop", "RMSprop", {"accuracy": 0.801, "miou": 0.472}),
    ("table4_adam", "ADAM", {"accuracy": 0.733, "miou": 0.401}),
]
EXTRA = [("source_only", "Source only (IDDA labels, no adaptation; not in the paper)", {})]
# Fig. 5 columns: (title, experiment). "Adapted + optimised" is the PTP experiment pruned.
FIG5_BEFORE, FIG5_ADAPTED = "source_only", "table1_fcd"
DEFAULT_PTP_SPARSITY = 0.4  # the paper: global PTP holds "until almost 40% sparsity"


# The paper's Table III, one complete `augmentation:` section per row. The default
# AugmentationConfig is Aug 3, the row the paper keeps.
_NO_PIXEL_AUG = {"linear_contrast": [], "noise_std": [], "noise_p": 0.5, "multiply": [],
                 "multiply_p": 0.5}
_ALL_PIXEL_AUG = {"linear_contrast": [0.75, 1.5], "noise_std": [0.0, 0.05 * 255], "noise_p": 0.5,
                  "multiply": [0.8, 1.2], "multiply_p": 0.5}
TABLE_III_AUGMENTATIONS: dict[str, dict] = {
    "baseline": {"hflip": 0.0, "blur_sigma": [], "blur_p": 1.0, **_NO_PIXEL_AUG},
    "aug1": {"hflip": 0.5, "blur_sigma": [], "blur_p": 1.0, **_NO_PIXEL_AUG},
    "aug2": {"hflip": 0.5, "blur_sigma": [0.0, 3.0], "blur_p": 1.0, **_NO_PIXEL_AUG},
    "aug3": {"hflip": 0.5, "blur_sigma": [1.0, 2.0], "blur_p": 1.0, **_NO_PIXEL_AUG},
    "aug4": {"hflip": 0.0, "blur_sigma": [0.0, 3.0], "blur_p": 1.0, **_ALL_PIXEL_AUG},
    "aug5": {"hflip": 0.5, "blur_sigma": [1.0, 2.0], "blur_p": 1.0, **_ALL_PIXEL_AUG},
}


def table_iii_yaml(row: str) -> str:
    """The `augmentation:` YAML section of one Table III row ('baseline', 'aug1' ... 'aug5')."""
    return yaml.safe_dump({"augmentation": TABLE_III_AUGMENTATIONS[row]}, sort_keys=False)
