"""Resumable stages (stages.py): reuse only with the same settings and outputs, chaining, and a
stage that writes nothing."""
from __future__ import annotations

import pytest

from uda_seg_core.stages import StageError, Stages


def test_a_stage_is_reused_only_with_the_same_settings_and_outputs(tmp_path):
    out = tmp_path / "a.txt"
    calls = []

    def action():
        calls.append(1)
        out.write_text("x")

    assert Stages(tmp_path, fresh=False).run("data", {"seed": 0}, [out], action)
    assert not Stages(tmp_path, fresh=False).run("data", {"seed": 0}, [out], action)
    assert Stages(tmp_path, fresh=False).run("data", {"seed": 1}, [out], action)  # settings changed
    out.unlink()
    assert Stages(tmp_path, fresh=False).run("data", {"seed": 1}, [out], action)  # output gone
    assert Stages(tmp_path, fresh=True).run("data", {"seed": 1}, [out], action)
    assert len(calls) == 4


def test_after_a_stage_reruns_every_later_stage_reruns(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    first = Stages(tmp_path, fresh=False)
    first.run("one", {}, [a], lambda: a.write_text("1"))
    first.run("two", {}, [b], lambda: b.write_text("2"))
    again = Stages(tmp_path, fresh=False)
    assert again.run("one", {"changed": True}, [a], lambda: a.write_text("1"))
    assert again.run("two", {}, [b], lambda: b.write_text("2"))  # unchanged itself, input changed


def test_a_stage_that_writes_nothing_fails_and_is_not_marked_done(tmp_path):
    stages = Stages(tmp_path, fresh=False)
    with pytest.raises(StageError, match="without writing"):
        stages.run("x", {}, [tmp_path / "never"], lambda: None)
    assert not (tmp_path / "stages" / "x.json").exists()
