"""The node's frame pipeline without ROS: slots, batching, counters, timing, stopping.

The pipeline takes plain callables; here `decode` reads a numpy frame, `segment` is a
small pure function (class id = red // 64) and `publish` keeps what it is given, so every
count and every mask can be checked exactly, on the calling thread (`run_once`) or with
the real worker thread.

    .venv/bin/pytest test/ros/test_pipeline.py -q
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from helpers.ros import wait_for
from uda_seg_ros.pipeline import FramePipeline, LatestFrame, LatestFrames


def red_quarters(frames, timer):
    """A stand-in network: the class id of a pixel is its red level // 64 (0-3)."""
    with timer.measure("preprocess"):
        reds = [rgb[..., 0] for rgb in frames]
    with timer.measure("inference"):
        ids = [red // 64 for red in reds]
    with timer.measure("postprocess"):
        return [mask.astype(np.uint8) for mask in ids]


def frame(red: int, h: int = 4, w: int = 6) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = red
    return rgb


class Recorder:
    """What the pipeline published and logged, in order."""

    def __init__(self):
        self.published: list[tuple[int, object, np.ndarray]] = []
        self.batches: list[int] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def segment(self, frames, timer):
        self.batches.append(len(frames))
        return red_quarters(frames, timer)

    def publish(self, index, msg, rgb, mask):
        self.published.append((index, msg, mask))


def make(inputs=("cam",), check=None, decode=None, segment=None, publish=None,
         stopping=lambda: False):
    rec = Recorder()
    pipeline = FramePipeline(
        list(inputs), decode=decode or (lambda index, msg: msg), segment=segment or rec.segment,
        publish=publish or rec.publish, check=check, warn=rec.warnings.append,
        error=rec.errors.append, stopping=stopping)
    return pipeline, rec


def counters(tracker) -> dict:
    return tracker.summary()["counters"]


def test_latest_frames_keep_the_newest_per_input_and_take_all_waiting():
    """Mutants: one slot shared by all inputs (camera B's frame replaces camera A's), a
    take that returns only one input's frame, a closed mailbox that still hands out."""
    slots = LatestFrames(3)
    assert slots.put(0, "a1") is False
    assert slots.put(2, "c1") is False
    assert slots.put(0, "a2") is True  # a1 was never taken: a drop, for input 0 only
    assert slots.take_all() == [(0, "a2"), (2, "c1")]
    assert slots.take_all(timeout=0.01) == []
    slots.put(1, "b1")
    slots.close()
    assert slots.take_all() == [] and slots.closed
    one = LatestFrame()
    one.put("x")
    assert one.put("y") is True and one.take() == "y" and one.take(timeout=0.01) is None


def test_frames_waiting_together_run_as_one_batch_and_go_back_to_their_inputs():
    """Mutants: frames of two cameras run one by one (two network runs), masks published
    on the wrong camera (the batch order lost), a dropped frame processed anyway."""
    pipeline, rec = make(inputs=("front", "rear"))
    pipeline.submit(0, frame(10))
    pipeline.submit(1, frame(200))
    pipeline.submit(0, frame(130))  # replaces front's first frame before the worker took it
    assert pipeline.run_once() == 2
    assert rec.batches == [2]
    assert [(i, int(mask.max())) for i, _, mask in rec.published] == [(0, 2), (1, 3)]
    front, rear = (counters(t) for t in pipeline.trackers)
    total = counters(pipeline.total)
    assert (front["received"], front["dropped"], front["processed"]) == (2, 1, 1)
    assert (rear["received"], rear["dropped"], rear["processed"]) == (1, 0, 1)
    assert (total["received"], total["dropped"], total["processed"]) == (3, 1, 2)
    summary = pipeline.summary()
    assert set(summary["cameras"]) == {"front", "rear"}


def test_every_stage_is_timed_per_camera_and_in_total():
    """Mutants: a stage left untimed, the batch's inference recorded for one camera only,
    a camera's samples missing from the total."""
    pipeline, _ = make(inputs=("front", "rear"))
    pipeline.submit(0, frame(1))
    pipeline.submit(1, frame(2))
    pipeline.run_once()
    stages = ("wait", "decode", "preprocess", "inference", "postprocess", "publish", "node")
    for tracker in pipeline.trackers:
        for stage in stages:
            assert tracker.percentiles(stage)["count"] == 1, stage
    total = pipeline.total
    assert total.percentiles("decode")["count"] == 2
    assert total.percentiles("inference")["count"] == 1  # one network run for both


def test_one_input_keeps_one_tracker_and_the_old_summary_shape():
    pipeline, _ = make()
    assert pipeline.trackers == [pipeline.total]
    pipeline.submit(0, frame(70))
    pipeline.run_once()
    assert "cameras" not in pipeline.summary()
    assert counters(pipeline.total)["processed"] == 1


def test_bad_frames_are_rejected_and_failures_counted_never_raised():
    """Mutants: a check failure that still reaches the worker, a decode failure counted
    as failed (it is bad input), an inference failure that kills the worker or goes
    uncounted, a rejected frame that is not logged."""
    def check(index, msg):
        if msg is None:
            raise ValueError("no pixels")

    def decode(index, msg):
        if isinstance(msg, str):
            raise ValueError(f"cannot decode {msg}")
        return msg

    def segment(frames, timer):
        if any(int(rgb[0, 0, 0]) == 99 for rgb in frames):
            raise RuntimeError("network blew up")
        return red_quarters(frames, timer)

    pipeline, rec = make(check=check, decode=decode, segment=segment)
    pipeline.submit(0, None)
    assert pipeline.run_once(timeout=0.01) == 0  # rejected on arrival: nothing to take
    pipeline.submit(0, "junk")
    pipeline.run_once()
    pipeline.submit(0, frame(99))
    pipeline.run_once()
    pipeline.submit(0, frame(64))
    pipeline.run_once()
    got = counters(pipeline.total)
    assert (got["received"], got["rejected"], got["failed"], got["processed"]) == (4, 2, 1, 1)
    assert len(rec.warnings) == 2 and "no pixels" in rec.warnings[0]
    assert "cannot decode junk" in rec.warnings[1] and "2 rejected so far" in rec.warnings[1]
    assert len(rec.errors) == 1 and "RuntimeError: network blew up" in rec.errors[0]
    assert [int(mask.max()) for _, _, mask in rec.published] == [1]


def test_a_publish_that_loses_the_race_with_the_shutdown_is_not_a_failure():
    """Issue 14 #3. Mutant: the stopping check dropped, so a publish that fails because
    the context went away mid-frame is logged as '[ERROR] segmentation failed' and
    counted as failed. The same failure while not stopping still counts."""
    outside = threading.Event()

    def publish(index, msg, rgb, mask):
        raise RuntimeError("publisher's context is invalid")

    pipeline, rec = make(publish=publish, stopping=outside.is_set)
    pipeline.submit(0, frame(1))
    pipeline.run_once()
    assert counters(pipeline.total)["failed"] == 1 and len(rec.errors) == 1
    outside.set()  # the ROS context is shut down (SIGINT) while a frame is in flight
    pipeline.submit(0, frame(2))
    pipeline.run_once()
    got = counters(pipeline.total)
    assert got["failed"] == 1 and got["unfinished"] == 1 and len(rec.errors) == 1


def test_inactive_pipeline_counts_frames_and_processes_none():
    """Mutant: a deactivated (managed) node that still processes, or stops counting."""
    pipeline, rec = make()
    pipeline.active = False
    pipeline.submit(0, frame(1))
    assert pipeline.run_once(timeout=0.01) == 0
    got = counters(pipeline.total)
    assert (got["received"], got["inactive"], got["processed"]) == (1, 1, 0)
    pipeline.active = True
    pipeline.submit(0, frame(1))
    assert pipeline.run_once() == 1 and len(rec.published) == 1


def test_worker_thread_processes_and_stop_joins_it():
    """Mutants: stop() that leaves the worker running (a frame submitted after stop is
    still published), start() twice starting two workers."""
    pipeline, rec = make()
    pipeline.start()
    with pytest.raises(RuntimeError, match="twice"):
        pipeline.start()
    pipeline.submit(0, frame(128))
    wait_for(lambda: counters(pipeline.total)["processed"] == 1, 10.0, message="a processed frame")
    pipeline.stop()
    assert not pipeline._worker.is_alive()
    pipeline.submit(0, frame(128))
    assert len(rec.published) == 1 and pipeline.stopping
