"""`torchrun --nproc_per_node 2 -m uda_seg_core.cli adapt`: DDP over gloo on tiny data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch.distributed as dist

from helpers.fixtures import tiny_overrides, write_domains
from uda_seg_core.checkpoint import load_checkpoint


def test_two_process_gloo_adaptation_writes_one_run(tmp_path):
    assert dist.is_available() and dist.is_gloo_available()
    idda, camvid = write_domains(tmp_path)
    overrides = tiny_overrides(tmp_path, idda, camvid, **{"train.run_name": "ddp"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "uda_seg_core.cli", "adapt", *overrides],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "ddp"
    files = sorted(p.name for p in run_dir.iterdir())
    assert files == ["best.pt", "config.yaml", "last.pt", "metrics.json",
                     "tb"]  # no temp or per-rank files
    assert len(list((run_dir / "tb").iterdir())) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 4 images over 2 ranks at batch 2: one iteration per epoch, two epochs.
    assert metrics["iterations_per_epoch"] == 1 and metrics["iteration"] == 2
    # Each rank measured half of the test split; the reduced matrix counts every pixel once.
    assert metrics["test"]["pixels"] == 4 * 48 * 64
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert len(ckpt["rng"]) == 2  # one RNG state per rank, for an exact resume
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # unwrapped weights
    assert proc.stdout.count("target test split") == 1  # only rank 0 reports
