"""The rows of `uda-seg real-study` and the two domain pairs it runs them on, as data.

A `Method` is one row: the command that makes it (`train`, `adapt`, `adapt-bn`), the config
settings that define it, the row whose selected network (same seed) it starts from, which
labels it trains on, and on how many seeds it runs. A `Pair` is one study: its rows, and
(`pair_layout`) where its labelled source, its unlabelled adaptation frames and its
evaluation frames come from.

- `sim-real`: the simulator's labels -> real CamVid. Adaptation on the unlabelled train
  frames of every drive but the held-out one(s) (default 0006R0); selection on CamVid's val
  split (0016E5); evaluation on val and on the held-out drive's labels (`heldout`).
- `day-dusk`: CamVid's daytime labels -> its dusk drive, no simulator. Source: the train
  frames of every drive but the dusk one (0006R0, 0016E5), with labels. The dusk drive
  (0001TP) is split by time: its first half (`0001TP:1/2`) is the unlabelled adaptation
  data, its second half (`0001TP:2/2`) is for evaluation only (`dusk`): no training, no
  pseudo-label threshold, no BatchNorm statistic and no model selection reads it.
  Selection on CamVid's val split, which is daytime (0016E5): a val split holding the dusk
  drive is refused.

Every adaptation row continues the same seed's `base` network (the adaptation stage:
fewer iterations, a lower learning rate; `ADAPTATION_STAGE`, replaced by --adapt-set), so
the adaptation rows differ from each other only in their method settings. A row's method
settings are applied after --set and --adapt-set: those tune what the rows leave open
(lambda_adv, target_weight, pseudo_label_quantile, iterations, ...) and cannot turn one row
into another.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uda_seg_core.config import ConfigError
from uda_seg_core.data import build_dataset, sequence_of

# The adaptation stage (every adapt row) continues the same seed's source-only network:
# "trained on synthetic data, then adapted" (the paper's sec. I), at a lower learning rate,
# validated more often.
ADAPTATION_STAGE = ("train.max_iters=1000", "train.lr=0.005", "train.val_every=250",
                    "train.checkpoint_every=250")


@dataclass(frozen=True)
class Method:
    """One row of the study."""

    name: str
    label: str
    command: str  # train | adapt | adapt-bn
    overrides: tuple[str, ...] = ()  # the settings that make the row what it is
    all_seeds: bool = True  # False: the first seed only
    base: str = ""  # the row whose best.pt (same seed) this one starts from
    # which labels a `train` row learns from: '' the pair's source; 'all' every CamVid train
    # frame; 'adaptation' the adaptation frames' own labels; 'source+adaptation' both
    labelled_target: str = ""
    optional: bool = False  # only with --only
    teacher: str = ""  # the row whose best.pt (same seed) labels the target (adapt.teacher)


def _adapt(discriminator: str, target_loss: str = "none", *extra: str) -> tuple[str, ...]:
    return (f"adapt.discriminator={discriminator}", f"adapt.target_loss={target_loss}", *extra)


SOURCE_ONLY = Method("source_only", "source only: source labels", "train")
ADAPT_BN = Method("adapt_bn", "BatchNorm re-estimation on target frames (no training)",
                  "adapt-bn", base="source_only")
CONTROL = Method("control", "adaptation, lambda_adv = 0 (control)", "adapt",
                 _adapt("fcd", "none", "adapt.lambda_adv=0.0"), base="source_only")
FCD = Method("fcd", "adapted with FCD", "adapt", _adapt("fcd"), base="source_only")
MINENT = Method("minent", "MinEnt (ADVENT): target entropy minimised, no D", "adapt",
                _adapt("none", "entropy"), base="source_only")
ST1 = Method("st1", "self-training, round 1 (pseudo-labels of source only), no D", "adapt",
             _adapt("none", "pseudo_label"), base="source_only")
ST2 = Method("st2", "self-training, round 2 (pseudo-labels of st1), no D", "adapt",
             _adapt("none", "pseudo_label"), base="st1", optional=True)
FCD_ST = Method("fcd_st", "FCD + self-training (pseudo-labels of source only)", "adapt",
                _adapt("fcd", "pseudo_label"), base="source_only")
# The teacher that labels the target best without its labels is the source-only network
# with BatchNorm re-estimated on the target frames; trained on both domains in one batch,
# the student keeps one set of BatchNorm statistics that serves both (beyond the issue's
# list: the pseudo-labels of source only are poor where the gap is in the statistics).
ST_BN = Method("st_bn", "self-training on the pseudo-labels of the BatchNorm-re-estimated "
               "network, source and target in one batch (joint BatchNorm), no D", "adapt",
               _adapt("none", "pseudo_label", "adapt.joint_batchnorm=true"),
               base="source_only", teacher="adapt_bn")
# its ablation: the same teacher, each domain through BatchNorm on its own (AdaptSegNet's
# two forwards), to tell what the teacher gives from what the joint statistics give
ST_BN_SEPARATE = Method("st_bn_separate", "st_bn with each domain normalised on its own "
                        "(two forwards, no joint BatchNorm)", "adapt",
                        _adapt("none", "pseudo_label", "adapt.joint_batchnorm=false"),
                        base="source_only", teacher="adapt_bn", optional=True)
# the best self-training with FCD's adversarial term added: does the paper's method add
# anything to the best row? (the "best combination with FCD")
FCD_ST_BN = Method("fcd_st_bn", "FCD + st_bn (adapt_bn's pseudo-labels, joint BatchNorm)",
                   "adapt", _adapt("fcd", "pseudo_label", "adapt.joint_batchnorm=true"),
                   base="source_only", teacher="adapt_bn")
NEW_METHODS = (MINENT, ST1, ST2, FCD_ST, ST_BN, ST_BN_SEPARATE, FCD_ST_BN)

SIM_REAL_ROWS: tuple[Method, ...] = (
    Method("upper_bound", "upper bound: CamVid train labels (every drive)", "train",
           all_seeds=False, labelled_target="all"),
    Method("upper_bound_seen", "upper bound: CamVid labels of the adaptation drives only",
           "train", all_seeds=False, labelled_target="adaptation", optional=True),
    SOURCE_ONLY, ADAPT_BN, CONTROL, FCD,
    Method("tfd", "adapted with TFD", "adapt", _adapt("tfd"), all_seeds=False,
           base="source_only"),
    Method("dwd", "adapted with DWD", "adapt", _adapt("dwd"), all_seeds=False,
           base="source_only"),
    # lambda_adv = 0.001 makes the adversarial gradient ~0.2% of the segmentation one here
    # (study/gradients.py): does a 10x stronger term change anything?
    Method("fcd_lambda0.01", "adapted with FCD, lambda_adv = 0.01 (10x the paper's)", "adapt",
           _adapt("fcd", "none", "adapt.lambda_adv=0.01"), all_seeds=False,
           base="source_only", optional=True),
    *NEW_METHODS,
)
DAY_DUSK_ROWS: tuple[Method, ...] = (
    Method("upper_bound_dusk", "upper bound: daytime labels + dusk labels of the adaptation "
           "frames", "train", all_seeds=False, labelled_target="source+adaptation"),
    SOURCE_ONLY, ADAPT_BN, CONTROL, FCD, *NEW_METHODS,
)


@dataclass(frozen=True)
class Evaluation:
    """Where a selected network is measured: a split, optionally some sequences of it."""

    key: str  # the record's key: 'val', 'heldout', 'dusk'
    split: str
    sequences: tuple[str, ...]
    title: str


@dataclass(frozen=True)
class Pair:
    name: str
    rows: tuple[Method, ...]
    target_key: str  # the evaluation on the target side (the one the study is about)
    upper_bound: str  # the row whose gap to source only the 'share of the gap closed' uses
    default_out: str
    # which domain CamVid's val split (0016E5, the selection split) belongs to: 'source'
    # (day-dusk: daytime, what an adapted network must not forget) or 'target' (sim-real:
    # a real drive, the side adaptation aims at)
    val_side: str

    def row(self, name: str) -> Method:
        for method in self.rows:
            if method.name == name:
                return method
        raise ConfigError(f"row {name!r} is not a row of the {self.name} pair; choose from "
                          f"{', '.join(m.name for m in self.rows)}")


PAIRS = {
    "sim-real": Pair("sim-real", SIM_REAL_ROWS, "heldout", "", "runs/real_study", "target"),
    "day-dusk": Pair("day-dusk", DAY_DUSK_ROWS, "dusk", "upper_bound_dusk", "runs/day_dusk",
                     "source"),
}
ALL_ROWS = tuple(dict.fromkeys(m.name for p in PAIRS.values() for m in p.rows))


@dataclass(frozen=True)
class Layout:
    """Which frames each part of one pair's study reads."""

    source_root: str  # the labelled source ('' never)
    source_sequences: tuple[str, ...]  # () = every frame of the source
    adaptation: tuple[str, ...]  # the unlabelled target frames (data.target_sequences)
    evaluations: tuple[Evaluation, ...]
    description: str  # one sentence for the report


def chosen_methods(pair: Pair, only: Sequence[str] | None) -> list[Method]:
    """The rows to run, in the pair's order: `only` (with the rows they start from, and
    theirs) or every non-optional row."""
    if not only:
        return [m for m in pair.rows if not m.optional]
    wanted = {pair.row(n).name for n in only}
    frontier = list(wanted)
    while frontier:
        row = pair.row(frontier.pop())
        for needed in (row.base, row.teacher):
            if needed and needed not in wanted:
                wanted.add(needed)
                frontier.append(needed)
    return [m for m in pair.rows if m.name in wanted]


def split_drives(camvid: str, split: str) -> list[str]:
    names = build_dataset("auto", camvid, split, with_labels=False).names
    return sorted({sequence_of(n) for n in names})


def sim_real_layout(camvid: str, sim: str, heldout: Sequence[str]) -> Layout:
    if not sim:
        raise ConfigError("--pair sim-real needs --sim: the simulator's labelled frames")
    drives = split_drives(camvid, "train")
    missing = [d for d in heldout if d not in drives]
    if missing:
        raise ConfigError(f"held-out drive(s) {', '.join(missing)} not in {camvid}'s train "
                          f"split (it holds {', '.join(drives)})")
    seen = tuple(d for d in drives if d not in heldout)
    if not seen:
        raise ConfigError("every drive of the train split is held out: nothing to adapt on")
    held = ", ".join(heldout)
    return Layout(
        source_root=sim, source_sequences=(), adaptation=seen,
        evaluations=(Evaluation("val", "val", (), "val (0016E5)"),
                     Evaluation("heldout", "train", tuple(heldout), f"held-out ({held})")),
        description=(f"source: simulator ({sim}); adaptation drives {', '.join(seen)}; "
                     f"held-out drive {held} (train-split labels, never seen by adaptation)"))


def day_dusk_layout(camvid: str, dusk: str) -> Layout:
    drives = split_drives(camvid, "train")
    if dusk not in drives:
        raise ConfigError(f"dusk drive {dusk} not in {camvid}'s train split (it holds "
                          f"{', '.join(drives)})")
    day = tuple(d for d in drives if d != dusk)
    if not day:
        raise ConfigError(f"{camvid}'s train split holds only {dusk}: no daytime source")
    val = split_drives(camvid, "val")
    if dusk in val:
        raise ConfigError(f"{camvid}'s val split holds frames of {dusk}: model selection "
                          f"would read dusk labels; the day-dusk study selects on daytime val")
    first, second = f"{dusk}:1/2", f"{dusk}:2/2"
    for part in (first, second):
        if not build_dataset("auto", camvid, "train", with_labels=False,
                             sequences=(part,)).names:
            raise ConfigError(f"{part} holds no frame: {dusk} is too short to split in two")
    return Layout(
        source_root=camvid, source_sequences=day, adaptation=(first,),
        evaluations=(Evaluation("val", "val", (), f"val ({', '.join(val)}, day)"),
                     Evaluation("dusk", "train", (second,), f"dusk eval ({second})")),
        description=(f"source: CamVid daytime train labels ({', '.join(day)}); adaptation "
                     f"frames {first} (no labels); dusk evaluation {second} (labels used "
                     f"for evaluation only); selection on val ({', '.join(val)})"))


def row_data(method: Method, layout: Layout, camvid: str) -> list[str]:
    """The data settings of one row: its labelled source, its unlabelled target frames."""
    target = [f"data.target_root={camvid}", "data.target_format=auto",
              f"data.target_sequences=[{','.join(layout.adaptation)}]"]
    kind = method.labelled_target
    if not kind:
        root, sequences = layout.source_root, layout.source_sequences
    elif kind == "all":
        root, sequences = camvid, ()
    elif kind == "adaptation":
        root, sequences = camvid, layout.adaptation
    elif kind == "source+adaptation":
        if layout.source_root != camvid:
            raise ConfigError(f"row {method.name}: its source is not CamVid")
        root, sequences = camvid, (*layout.source_sequences, *layout.adaptation)
    else:
        raise ValueError(f"unknown labelled_target {kind!r}")
    return [*target, f"data.source_root={root}", "data.source_format=auto",
            f"data.source_sequences=[{','.join(sequences)}]"]
