"""Watch what a training run really executes, for the resume tests.

`StepProbe(build)` wraps a trainer factory (`build_adversarial_trainer`, ...) for `launch`:
the trainer's step is wrapped so that the probe counts the steps this process executed
and fingerprints, just before each step, what that step starts from: the optimiser state
(momentum / Adam buffers), the schedulers and the python / numpy / torch RNG streams. A
resume that restarts at 0, or loads weights but not the optimiser or the RNG, shows up
as a different count or fingerprint even when the launcher's re-seeding makes the final
weights come out right.

As a script it is a training run that kill -9s itself at the start of step N + 1, i.e.
with exactly N iterations done (and `last.pt` as the loop left it):

    python test/helpers/resume_probe.py N adapt KEY=VALUE ...
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sys

import numpy as np
import torch


def _digest(value, h) -> None:
    """Feed tensors (bytes), containers and scalars into hash `h`, in a stable order."""
    if isinstance(value, torch.Tensor):
        h.update(str((value.dtype, tuple(value.shape))).encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(value.tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _digest(value[key], h)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _digest(item, h)
    elif callable(value):
        h.update(type(value).__name__.encode())  # lr_lambda objects: their fields follow
        _digest(getattr(value, "__dict__", {}), h)
    else:
        h.update(repr(value).encode())


def fingerprint(value) -> str:
    h = hashlib.sha256()
    _digest(value, h)
    return h.hexdigest()[:16]


def snapshot(trainer) -> dict:
    """What the next step starts from, as short fingerprints (one per part)."""
    return {
        "optimizers": {n: fingerprint(o.state_dict()) for n, o in trainer.optimizers.items()},
        # Parameters with state (SGD momentum, Adam moments): 0 before the first step.
        "optimizer_buffers": {n: len(o.state) for n, o in trainer.optimizers.items()},
        "adam_steps": {n: sorted({int(s["step"]) for s in o.state_dict()["state"].values()
                                  if "step" in s}) for n, o in trainer.optimizers.items()},
        "schedulers": {n: s.state_dict()["last_epoch"] for n, s in trainer.schedulers.items()},
        "rng": {"torch": fingerprint(torch.get_rng_state()),
                "numpy": fingerprint(np.random.get_state()[1]),
                "python": fingerprint(random.getstate()[1])},
    }


class StepProbe:
    """A trainer factory for `launch` that records a `snapshot` before every step."""

    def __init__(self, build, kill_after: int | None = None):
        self.build = build
        self.kill_after = kill_after
        self.snapshots: list[dict] = []

    @property
    def steps(self) -> int:
        return len(self.snapshots)

    def __call__(self, cfg, dist, device):
        trainer = self.build(cfg, dist, device)
        inner = trainer.step

        def step(batches):
            if self.kill_after is not None and self.steps == self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no handler, no cleanup
            self.snapshots.append(snapshot(trainer))
            return inner(batches)

        trainer.step = step
        return trainer


def main(argv: list[str]) -> None:
    from uda_seg_core.train.adversarial import build_adversarial_trainer
    from uda_seg_core.train.loop import launch
    from uda_seg_core.train.supervised import build_supervised_trainer

    kill_after, command, overrides = int(argv[0]), argv[1], argv[2:]
    build = {"adapt": build_adversarial_trainer, "train": build_supervised_trainer}[command]
    torch.set_num_threads(1)
    launch(command, argparse.Namespace(config=None, resume=None, overwrite=False, stop_at=None,
                                       overrides=overrides), StepProbe(build, kill_after))
    sys.exit("the run finished without being killed")


if __name__ == "__main__":
    main(sys.argv[1:])
