"""Resumable stages: a long job cut into steps, each skipped on a rerun when its settings and
its outputs are unchanged since it last finished.

    stages = Stages(out, fresh=False)
    stages.run("data", {"seed": 0}, [out / "data" / "idda"], make_data)   # True when it ran

A stage is done when its stamp (`out/stages/<name>.json`, the settings it ran with,
written only after it finished and its outputs exist) matches the settings asked for and
every output is there. With `chained` (the default) a stage that runs makes every later
stage run too: their inputs changed. Used by `make demo` and by `uda-seg reproduce` (for
its pruning sweep; its training runs resume mid-run from `last.pt`, see
`reproduce.run_state`) and by `uda-seg deploy` (each candidate's pruning, export,
quantisation and evaluation, with `chained=False`: only what depends on a change reruns).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage that failed; the message names it (and where its log is, when it has one)."""


class Stages:
    def __init__(self, out: str | Path, fresh: bool = False, chained: bool = True):
        self.dir = Path(out) / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dirty = fresh  # True: every stage runs
        self.chained = chained

    def stamp(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def current(self, name: str, params: dict, outputs: Sequence[Path]) -> bool:
        """Whether `name` finished with these settings and its outputs are all there."""
        stamp = self.stamp(name)
        if self.dirty or not stamp.is_file() or not all(Path(p).exists() for p in outputs):
            return False
        try:
            return json.loads(stamp.read_text()) == params
        except json.JSONDecodeError:
            return False

    def run(self, name: str, params: dict, outputs: Sequence[Path],
            action: Callable[[], object], say: Callable[[str], None] = log.info) -> bool:
        """Run `action()` unless the stage is current; returns True when it ran. A stage
        that finishes without writing its outputs is a StageError and stays not done."""
        if self.current(name, params, outputs):
            say("    unchanged since the last run: reused (--fresh redoes it)")
            return False
        if self.chained:
            self.dirty = True
        self.stamp(name).unlink(missing_ok=True)
        action()
        missing = [str(p) for p in outputs if not Path(p).exists()]
        if missing:
            raise StageError(f"stage {name} finished without writing {', '.join(missing)}")
        self.stamp(name).write_text(json.dumps(params, indent=2) + "\n")
        return True
