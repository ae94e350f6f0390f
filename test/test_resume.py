"""Resume: N iterations straight == N/2, stop, --resume, the rest; bad checkpoints fail clearly."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import single_thread, tiny_overrides, write_domains  # noqa: F401

from uda_seg_core.checkpoint import load_checkpoint
from uda_seg_core.commands.train import run_command
from uda_seg_core.train.adversarial import build_adversarial_trainer
from uda_seg_core.train.loop import launch

pytestmark = pytest.mark.usefixtures("single_thread")


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
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    idda, camvid = write_domains(root)
    return root, idda, camvid


def test_stop_and_resume_gives_the_same_weights(domains):
    root, idda, camvid = domains
    # Dropout in D draws from the global RNG and the augmentations from seeded streams:
    # both must continue exactly where they stopped. Stop mid-epoch (3 of 2 x 2).
    common = dict(**{"train.deterministic": "true", "adapt.dropout": 0.2,
                     "train.checkpoint_every": 100})
    straight = tiny_overrides(root, idda, camvid, **common, **{"train.run_name": "straight"})
    pieces = tiny_overrides(root, idda, camvid, **common, **{"train.run_name": "pieces"})
    launch("adapt", args(straight), build_adversarial_trainer)
    first = launch("adapt", args(pieces, stop_at=3), build_adversarial_trainer)
    assert first["iteration"] == 3 and first["test"] is None
    run_dir = root / "runs" / "pieces"
    assert load_checkpoint(run_dir / "last.pt")["training_state"]["iteration"] == 3
    launch("adapt", args(resume=str(run_dir)), build_adversarial_trainer)

    a = load_checkpoint(root / "runs" / "straight" / "last.pt")
    b = load_checkpoint(run_dir / "last.pt")
    assert a["training_state"]["iteration"] == b["training_state"]["iteration"] == 4
    for key in ("state_dict", "modules", "optimizers", "schedulers"):
        assert_same(a[key], b[key], key)
    assert_same(a["training_state"]["history"], b["training_state"]["history"], "history")


def test_corrupt_or_mismatched_checkpoint_fails_naming_the_file(domains, capsys):
    root = domains[0]
    run_dir = root / "runs" / "straight"
    if not (run_dir / "last.pt").exists():
        pytest.skip("needs the run of test_stop_and_resume_gives_the_same_weights")
    # Another discriminator than the one the checkpoint holds.
    assert run_command("adapt", args(["adapt.discriminator=dwd"], resume=str(run_dir)),
                       build_adversarial_trainer) == 2
    err = capsys.readouterr().err
    assert str(run_dir / "last.pt") in err and "does not fit" in err

    broken = root / "runs" / "broken"
    shutil.copytree(run_dir, broken)
    data = (broken / "last.pt").read_bytes()
    (broken / "last.pt").write_bytes(data[: len(data) // 2])  # a write cut short
    assert run_command("adapt", args(resume=str(broken)), build_adversarial_trainer) == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {broken / 'last.pt'}" in err

    shutil.copy(broken / "best.pt", broken / "last.pt")  # weights only, no training state
    assert run_command("adapt", args(resume=str(broken)), build_adversarial_trainer) == 2
    assert "not a resumable training state" in capsys.readouterr().err


def test_kill_9_then_resume_finishes(domains):
    root, idda, camvid = domains
    overrides = tiny_overrides(root, idda, camvid, **{"train.run_name": "killed", "train.epochs": 4,
                                                      "train.checkpoint_every": 1})
    run_dir = root / "runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "uda_seg_core.cli", "adapt", *overrides],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = load_checkpoint(run_dir / "last.pt")["training_state"]["iteration"]
    assert done_before < 8
    metrics = launch("adapt", args(resume=str(run_dir)), build_adversarial_trainer)
    assert metrics["iteration"] == metrics["max_iters"] == 8
    assert metrics["test"]["miou"] is not None
    assert Path(run_dir / "best.pt").exists()
