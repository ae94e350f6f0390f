"""Resume continues where the run stopped: the iteration, the optimisers (momentum and Adam
buffers), the schedules and the RNG streams; kill -9 loses at most one checkpoint
interval; bad checkpoints fail clearly.

The launcher re-seeds everything at start, so a "resume" that restarts from iteration 0
reproduces an uninterrupted run bit for bit: comparing final weights alone cannot tell a
resume from a restart. These tests count the steps the resumed process executes and
compare what its first step starts from with what the uninterrupted run's step at that
iteration started from (`resume_probe.StepProbe`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from helpers.fixtures import tiny_overrides
from helpers.resume_probe import StepProbe
from uda_seg_core.checkpoint import load_checkpoint, save_checkpoint
from uda_seg_core.commands.train import run_command
from uda_seg_core.config import Config
from uda_seg_core.runtime import DistInfo, gather_rng_states
from uda_seg_core.train.adversarial import build_adversarial_trainer
from uda_seg_core.train.loop import launch
from uda_seg_core.train.resume import restore, resumable_state
from uda_seg_core.train.schedules import poly_scheduler
from uda_seg_core.train.trainer import LoopState, Trainer

PROBE = ROOT / "test" / "helpers" / "resume_probe.py"  # run as a script


def args(overrides=(), resume=None, stop_at=None) -> argparse.Namespace:
    return argparse.Namespace(config=None, resume=resume, overwrite=False, stop_at=stop_at,
                              overrides=list(overrides))


def assert_same(a, b, where: str = "") -> None:
    """Tensors equal bit for bit, everything else equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def stopped_and_resumed(tmp_path_factory, tiny_domains):
    """4 iterations straight; the same run stopped after 3 and resumed. Dropout in D draws
    from the global RNG and the augmentations from seeded streams: both must continue
    exactly where they stopped. 3 of 2 x 2 stops mid-epoch."""
    root = tmp_path_factory.mktemp("resume")
    d = tiny_domains
    common = {"train.deterministic": "true", "adapt.dropout": 0.2, "train.checkpoint_every": 100}
    straight, first, resumed = (StepProbe(build_adversarial_trainer) for _ in range(3))
    launch("adapt", args(tiny_overrides(root, d.idda, d.camvid, **common,
                                        **{"train.run_name": "straight"})), straight)
    pieces = tiny_overrides(root, d.idda, d.camvid, **common, **{"train.run_name": "pieces"})
    stopped = launch("adapt", args(pieces, stop_at=3), first)
    run_dir = root / "runs" / "pieces"
    saved = load_checkpoint(run_dir / "last.pt")
    launch("adapt", args(resume=str(run_dir)), resumed)
    return {"root": root, "straight": straight, "first": first, "resumed": resumed,
            "stopped": stopped, "saved": saved}


def test_stop_and_resume_gives_the_same_weights(stopped_and_resumed):
    """Guards against any state the resume forgets (the D dropout RNG, the augmentation
    streams, the poly schedule): the final checkpoints must be identical."""
    r = stopped_and_resumed
    assert r["stopped"]["iteration"] == 3 and r["stopped"]["test"] is None
    assert r["saved"]["training_state"]["iteration"] == 3
    a = load_checkpoint(r["root"] / "runs" / "straight" / "last.pt")
    b = load_checkpoint(r["root"] / "runs" / "pieces" / "last.pt")
    assert a["training_state"]["iteration"] == b["training_state"]["iteration"] == 4
    for key in ("state_dict", "modules", "optimizers", "schedulers"):
        assert_same(a[key], b[key], key)
    assert_same(a["training_state"]["history"], b["training_state"]["history"], "history")


def test_history_keeps_each_step_loss_averaged_over_each_validation_interval(
        stopped_and_resumed):
    """metrics.json's history entry holds the mean of every step loss since the previous
    validation (what `uda-seg real-study` reads D's per-domain accuracy from). Checked
    against the per-iteration values in TensorBoard. Bugs guarded: sums never reset (an
    entry averaging from the start of training), an interval off by one, and a resume that
    restarts the interval (stopped after 3, the resumed run's second entry would average
    iteration 4 alone: the history comparison above fails on it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = stopped_and_resumed["root"] / "runs" / "straight"
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [h["iteration"] for h in history] == [2, 4]
    for entry, steps in zip(history, ((1, 2), (3, 4))):
        assert entry["train_losses_iterations"] == 2
        assert {"seg", "adv", "d", "d_acc_source", "d_acc_target"} <= set(entry["train_losses"])
        for key, mean in entry["train_losses"].items():
            logged = {e.step: e.value for e in events.Scalars(f"loss/{key}")}
            assert mean == pytest.approx(sum(logged[s] for s in steps) / 2, rel=1e-5), key
    pieces = json.loads((stopped_and_resumed["root"] / "runs" / "pieces" / "metrics.json")
                        .read_text())["history"]
    assert [h["train_losses"] for h in pieces] == [h["train_losses"] for h in history]


def test_resume_continues_from_the_saved_iteration_optimiser_schedule_and_rng(stopped_and_resumed):
    """Mutants: a restore() that checks the checkpoint, loads nothing and restarts at
    iteration 0 (it reproduces the straight run's weights, since the launcher re-seeds);
    a restore() that skips the optimiser, the schedulers, or set_rng_state.

    The resumed process must execute only the missing iteration, and its first step must
    start from exactly the momentum / Adam buffers, schedule position and RNG streams
    that the uninterrupted run's 4th step started from.
    """
    r = stopped_and_resumed
    straight, first, resumed = r["straight"], r["first"], r["resumed"]
    assert (straight.steps, first.steps) == (4, 3)
    assert resumed.steps == 1, f"the resumed run executed {resumed.steps} iterations, not 4 - 3"
    at_resume, expected = resumed.snapshots[0], straight.snapshots[3]
    assert at_resume["optimizer_buffers"] == expected["optimizer_buffers"]
    assert min(expected["optimizer_buffers"].values()) > 0
    assert at_resume["adam_steps"] == expected["adam_steps"] == {"g": [], "d": [3]}  # G: SGD
    assert at_resume["schedulers"] == expected["schedulers"] == {"g": 3, "d": 3}
    assert at_resume["optimizers"] == expected["optimizers"], "optimiser buffers not restored"
    assert at_resume["rng"] == expected["rng"], "RNG streams not at the saved position"
    assert at_resume["rng"] != straight.snapshots[0]["rng"]  # the streams really moved


def test_kill_9_loses_at_most_one_checkpoint_interval(tmp_path, tiny_domains):
    """Mutants: resume that restarts at 0; resume from the previous-but-one checkpoint
    (restore() setting the iteration one interval back, or last.pt written only every
    other interval).

    A real training process (checkpoint every 3 iterations, 12 in all) is killed with
    SIGKILL with exactly 10 iterations done; last.pt must hold iteration 9 and the
    resumed run must execute exactly 12 - 9 iterations: 1 lost, at most 3 allowed.
    """
    every, done, total = 3, 10, 12
    d = tiny_domains
    overrides = tiny_overrides(tmp_path, d.idda, d.camvid, **{
        "train.run_name": "killed", "train.max_iters": total, "train.checkpoint_every": every,
        "train.val_every": 100})
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(PROBE), str(done), "adapt",
                           *overrides], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    saved = load_checkpoint(run_dir / "last.pt")["training_state"]["iteration"]
    assert saved == done - done % every == 9, f"last.pt holds iteration {saved}"

    resumed = StepProbe(build_adversarial_trainer)
    metrics = launch("adapt", args(resume=str(run_dir)), resumed)
    restarted_at = total - resumed.steps
    assert restarted_at == saved, f"resumed at iteration {restarted_at}, last.pt holds {saved}"
    assert done - restarted_at <= every, f"lost {done - restarted_at} iterations"
    assert resumed.snapshots[0]["schedulers"] == {"g": saved, "d": saved}
    assert metrics["iteration"] == metrics["max_iters"] == total
    assert metrics["test"]["miou"] is not None and (run_dir / "best.pt").exists()


def small_trainer(seed: int) -> Trainer:
    """A Trainer of two small networks (SGD with momentum, Adam, poly schedules), no data:
    enough for the state that `restore` must bring back, in milliseconds."""
    torch.manual_seed(seed)
    g, d = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 1, 3)
    opt_g = torch.optim.SGD(g.parameters(), lr=0.1, momentum=0.9)
    opt_d = torch.optim.Adam(d.parameters(), lr=0.01)
    return Trainer(command="adapt", model=g, optimizers={"g": opt_g, "d": opt_d},
                   schedulers={"g": poly_scheduler(opt_g, 10), "d": poly_scheduler(opt_d, 10)},
                   scalers={}, loaders={}, step=lambda batches: {}, extra_modules={"d": d})


def test_restore_brings_back_every_part_of_the_training_state(tmp_path):
    """The state round trip alone (fast; `make mutants` leans on it): weights of G and D,
    optimiser buffers, schedules, RNG streams and the loop counters written by
    `resumable_state` come back through `restore` into a freshly built trainer."""
    trainer = small_trainer(0)
    for _ in range(3):
        for opt in trainer.optimizers.values():
            opt.zero_grad()
        (trainer.model.weight.sum() + trainer.extra_modules["d"].weight.square().sum()).backward()
        for opt in trainer.optimizers.values():
            opt.step()
        for sched in trainer.schedulers.values():
            sched.step()
    state = LoopState(iteration=3, best_miou=0.25, best_iteration=2, history=[{"iteration": 2}],
                      epochs=[{"epoch": 1}], train_seconds=1.5, timed_iterations=2)
    torch.manual_seed(7)
    rng = gather_rng_states(DistInfo())
    cfg = Config()
    path = save_checkpoint(tmp_path / "last.pt", trainer.model, cfg,
                           **resumable_state(trainer, state, rng, max_iters=10))
    expected_draw = torch.rand(3)

    fresh = small_trainer(1)
    torch.manual_seed(99)
    back = restore(fresh, path, cfg, DistInfo(), torch.device("cpu"))
    assert back == state
    assert torch.equal(torch.rand(3), expected_draw), "RNG not at the saved position"
    assert_same(fresh.model.state_dict(), trainer.model.state_dict(), "G")
    assert_same(fresh.extra_modules["d"].state_dict(), trainer.extra_modules["d"].state_dict(), "D")
    for name in ("g", "d"):
        assert_same(fresh.optimizers[name].state_dict(), trainer.optimizers[name].state_dict(),
                    name)
        assert fresh.schedulers[name].state_dict()["last_epoch"] == 3
        assert fresh.optimizers[name].param_groups[0]["lr"] == \
            trainer.optimizers[name].param_groups[0]["lr"]


@pytest.fixture
def run_copy(stopped_and_resumed, tmp_path) -> Path:
    """A private copy of the finished straight run (its last.pt, best.pt, config)."""
    copy = tmp_path / "straight"
    shutil.copytree(stopped_and_resumed["root"] / "runs" / "straight", copy)
    return copy


def test_corrupt_or_mismatched_checkpoint_fails_naming_the_file(run_copy, tmp_path, capsys):
    # Another discriminator than the one the checkpoint holds.
    assert run_command("adapt", args(["adapt.discriminator=dwd"], resume=str(run_copy)),
                       build_adversarial_trainer) == 2
    err = capsys.readouterr().err
    assert str(run_copy / "last.pt") in err and "does not fit" in err

    broken = tmp_path / "broken"
    shutil.copytree(run_copy, broken)
    data = (broken / "last.pt").read_bytes()
    (broken / "last.pt").write_bytes(data[: len(data) // 2])  # a write cut short
    assert run_command("adapt", args(resume=str(broken)), build_adversarial_trainer) == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {broken / 'last.pt'}" in err

    shutil.copy(broken / "best.pt", broken / "last.pt")  # weights only, no training state
    assert run_command("adapt", args(resume=str(broken)), build_adversarial_trainer) == 2
    assert "not a resumable training state" in capsys.readouterr().err
