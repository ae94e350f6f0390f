"""`make demo` orchestration: stage reuse, the summary table, the ROS domain claim.

The demo itself trains networks for minutes; `make demo` is its end-to-end check. These
tests cover the logic that decides what a rerun redoes and what the table says.
"""
from __future__ import annotations

import json

import pytest

from uda_seg_ros.demo import DemoSettings, Stages, build_parser, summary_table


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
    from uda_seg_ros.demo import DemoError

    stages = Stages(tmp_path, fresh=False)
    with pytest.raises(DemoError, match="without writing"):
        stages.run("x", {}, [tmp_path / "never"], lambda: None)
    assert not (tmp_path / "stages" / "x.json").exists()


def test_summary_table_has_offline_and_live_rows_with_latency_and_drops():
    offline = {"source only": {"miou": 0.2512, "accuracy": 0.6, "images": 20},
               "adapted": {"miou": 0.2734, "accuracy": 0.65, "images": 20}}
    live = {"paced": {"miou": 0.2734, "accuracy": 0.65, "frames_matched": 20, "frames_labelled": 20,
                      "node": {"fps": 14.2, "counters": {"dropped": 0},
                               "stages": {"node": {"count": 20, "p50": 61.04, "p99": 80.0},
                                          "end_to_end": {"count": 20, "p50": 65.0, "p99": 90.0}}}}}
    table = summary_table(offline, live, served="adapted")
    lines = table.splitlines()
    assert len(lines) == 2 + 2 + 1
    assert "| offline: source only | 25.12 |" in table
    assert "| offline: adapted (served) | 27.34 |" in table
    assert "| live: paced | 27.34 | 65.00 | 20/20 | 0 | 14.2 | 61.0 / 80.0 | 65.0 / 90.0 |" in table
    json.dumps(live)  # the same structure goes to summary.json


def test_defaults_parse_and_size_is_h_by_w():
    args = build_parser().parse_args(["--size", "90x120", "--iters", "5", "--no-realtime"])
    settings = DemoSettings(**{k: v for k, v in vars(args).items() if k != "fresh"})
    assert settings.hw == (90, 120) and settings.iters == 5 and settings.realtime is False


def test_an_explicit_thread_count_wins_over_the_automatic_choice():
    from uda_seg_ros.demo import choose_threads

    assert choose_threads(3) == 3
    assert choose_threads(0) in (0, 1)
