"""The node's frame path without ROS: newest-frame slots, one worker, timing and counters.

    pipeline = FramePipeline(["/front/image", "/rear/image"], decode=to_rgb_of_msg,
                             segment=segmenter.segment_batch, publish=publish_masks)
    pipeline.start()
    pipeline.submit(0, msg)        # the subscription callback: count, check, hand over
    pipeline.stop()                # worker joined; the trackers keep the statistics

Each input (camera) has a one-frame slot: a frame that arrives before the worker took
the previous one of the same input replaces it and counts as dropped, so no queue grows
however fast frames come. The worker takes every frame waiting at once (one per input),
decodes each, runs them through `segment` as one batch, and publishes each result. It
never stops on a bad frame: a frame that fails its check or its decoding is *rejected*
(bad input), one whose segmentation or publishing fails is *failed* (logged, counted) --
unless the pipeline is stopping, when a publish that loses the race with the shutdown is
neither logged nor counted.

Everything is plain callables, so tests drive it without rclpy:
- `check(index, msg)`: O(1) validation on arrival; raises to reject;
- `decode(index, msg) -> HxWx3 uint8 RGB`; raises to reject;
- `segment(frames, timer) -> masks`: one mask per frame, timing its stages in `timer`;
- `publish(index, msg, rgb, mask)`;
- `stamp_age(msg) -> seconds since the message's stamp` (None: unstamped);
- `warn(text)` / `error(text)`: where rejected and failed frames are reported;
- `stopping()`: True once the outside world is going away (the ROS context is shut down).

Per input a LatencyTracker (received, dropped, rejected, failed, processed, inactive,
unfinished = cut short by the shutdown;
wait, decode, preprocess, inference, postprocess, publish, node, age, end_to_end), and
one for the total; with one input they are the same tracker.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uda_seg_core.inference import LatencyTracker, TrackerGroup

# After a batch holding a frame this large, freed buffers are handed back to the OS
# (glibc keeps them in its arenas otherwise: a few 4K frames would pin a gigabyte).
LARGE_FRAME_PIXELS = 1 << 22  # 4 Mpx, e.g. 2560x1600


class LatestFrames:
    """One newest-frame mailbox per input under one condition: `put(i, item)` replaces
    input i's frame not yet taken (and says so); `take_all` waits for any frame and takes
    every waiting one, in input order."""

    def __init__(self, inputs: int = 1):
        self._cond = threading.Condition()
        self._items: list[Any] = [None] * int(inputs)
        self._closed = False

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def put(self, index: int, item: Any) -> bool:
        """Store `item` as input `index`'s newest frame; True when it replaced one that was
        never taken."""
        with self._cond:
            replaced = self._items[index] is not None
            self._items[index] = item
            self._cond.notify()
            return replaced

    def take_all(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """[(input, frame), ...] of every waiting frame; [] once closed or after `timeout`."""
        with self._cond:
            if not self._closed and all(item is None for item in self._items):
                self._cond.wait_for(lambda: self._closed or any(i is not None for i in self._items),
                                    timeout)
            if self._closed:
                return []
            taken = [(i, item) for i, item in enumerate(self._items) if item is not None]
            self._items = [None] * len(self._items)
            return taken

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LatestFrame(LatestFrames):
    """The one-input mailbox: `put(item)` replaces a frame not yet taken, `take` waits."""

    def __init__(self):
        super().__init__(1)

    def put(self, item: Any) -> bool:  # type: ignore[override]
        return super().put(0, item)

    def take(self, timeout: float | None = None) -> Any:
        """The newest frame, or None once closed (or after `timeout` seconds)."""
        taken = self.take_all(timeout)
        return taken[0][1] if taken else None


@dataclass
class Frame:
    index: int  # which input it came from
    msg: Any
    received: float  # time.perf_counter() when it was submitted


def release_memory() -> None:
    """Return freed heap pages to the OS (glibc `malloc_trim`); a no-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _quiet(text: str) -> None:
    """The default reporter: nothing (a test or tool passes its own)."""


class FramePipeline:
    """Slots + worker + per-stage timing for one or more inputs (see the module docstring)."""

    def __init__(self, inputs: Sequence[str], *,
                 decode: Callable[[int, Any], np.ndarray],
                 segment: Callable[[list[np.ndarray], TrackerGroup], list[np.ndarray]],
                 publish: Callable[[int, Any, np.ndarray, np.ndarray], None],
                 check: Callable[[int, Any], Any] | None = None,
                 stamp_age: Callable[[Any], float | None] | None = None,
                 warn: Callable[[str], None] = _quiet, error: Callable[[str], None] = _quiet,
                 stopping: Callable[[], bool] = lambda: False, window: int = 300):
        if not inputs:
            raise ValueError("a FramePipeline needs at least one input")
        self.inputs = list(inputs)
        self.total = LatencyTracker(window)
        self.trackers = ([self.total] if len(self.inputs) == 1
                         else [LatencyTracker(window) for _ in self.inputs])
        self.active = True  # False: frames are counted as received + inactive, not processed
        self._decode, self._segment, self._publish = decode, segment, publish
        self._check, self._stamp_age = check, stamp_age
        self._warn, self._error, self._outside_stopping = warn, error, stopping
        self._slots = LatestFrames(len(self.inputs))
        self._stopping = False
        self._worker: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("FramePipeline.start() called twice")
        self._worker = threading.Thread(target=self._work, name="segmentation_worker",
                                        daemon=True)
        self._worker.start()

    @property
    def stopping(self) -> bool:
        return self._stopping or self._outside_stopping()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the slots (a frame still waiting is left alone) and join the worker."""
        self._stopping = True
        self._slots.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)

    # -- input (any thread, never blocks on the worker) ----------------------------------
    def count(self, index: int, name: str) -> None:
        """Add one to counter `name` of input `index` (and to the total)."""
        for tracker in self._trackers_of(index):
            tracker.count(name)

    def submit(self, index: int, msg: Any) -> None:
        """A frame of input `index` arrived: count it, check it, hand it to the worker."""
        received = time.perf_counter()
        self.count(index, "received")
        if self._stamp_age is not None:
            age = self._stamp_age(msg)
            if age is not None:
                self._record(index, "age", age)
        if not self.active:
            self.count(index, "inactive")
            return
        if self._check is not None:
            try:
                self._check(index, msg)
            except Exception as exc:  # noqa: BLE001 - bad input is counted, never fatal
                self._reject(index, exc)
                return
        if self._slots.put(index, Frame(index, msg, received)):
            self.count(index, "dropped")

    # -- worker --------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._slots.closed:
            self.run_once()

    def run_once(self, timeout: float | None = None) -> int:
        """Take every waiting frame (waiting up to `timeout` for one) and process them as
        one batch; the number taken. The worker's loop; a test without a worker calls it."""
        frames = [frame for _, frame in self._slots.take_all(timeout)]
        if frames:
            self.process(frames)
        return len(frames)

    def process(self, frames: list[Frame]) -> None:
        """Decode, segment as one batch, publish."""
        decoded: list[tuple[Frame, np.ndarray]] = []
        for frame in frames:
            self._record(frame.index, "wait", time.perf_counter() - frame.received)
            try:
                with TrackerGroup(self._trackers_of(frame.index)).measure("decode"):
                    decoded.append((frame, self._decode(frame.index, frame.msg)))
            except Exception as exc:  # noqa: BLE001 - bytes that do not decode: bad input
                self._reject(frame.index, exc)
        if not decoded:
            return
        group = TrackerGroup([t for f, _ in decoded for t in self._trackers_of(f.index)])
        try:
            masks = self._segment([rgb for _, rgb in decoded], group)
        except Exception as exc:  # noqa: BLE001 - a failed inference must not end the node
            for frame, _ in decoded:
                self._fail(frame.index, exc)
            return
        largest = max(rgb.shape[0] * rgb.shape[1] for _, rgb in decoded)
        for (frame, rgb), mask in zip(decoded, masks):
            self._finish(frame, rgb, mask)
        del decoded, masks
        if largest >= LARGE_FRAME_PIXELS:
            release_memory()

    def _finish(self, frame: Frame, rgb: np.ndarray, mask: np.ndarray) -> None:
        try:
            with TrackerGroup(self._trackers_of(frame.index)).measure("publish"):
                self._publish(frame.index, frame.msg, rgb, mask)
        except Exception as exc:  # noqa: BLE001 - e.g. the context went away mid-publish
            self._fail(frame.index, exc)
            return
        self._record(frame.index, "node", time.perf_counter() - frame.received)
        if self._stamp_age is not None:
            age = self._stamp_age(frame.msg)
            if age is not None:
                self._record(frame.index, "end_to_end", age)
        self.count(frame.index, "processed")

    # -- bookkeeping ---------------------------------------------------------------------
    def _trackers_of(self, index: int) -> list[LatencyTracker]:
        tracker = self.trackers[index]
        return [tracker] if tracker is self.total else [tracker, self.total]

    def _record(self, index: int, stage: str, seconds: float) -> None:
        TrackerGroup(self._trackers_of(index)).record(stage, seconds)

    def _reject(self, index: int, exc: BaseException) -> None:
        self.count(index, "rejected")
        self._warn(f"rejected input frame{self._where(index)}: {exc} "
                   f"({self.total.counter('rejected')} rejected so far)")

    def _fail(self, index: int, exc: BaseException) -> None:
        if self.stopping:  # lost the race with the shutdown: not the frame's fault
            self.count(index, "unfinished")
            return
        self.count(index, "failed")
        self._error(f"segmentation failed on a frame{self._where(index)}: {_describe(exc)} "
                    f"({self.total.counter('failed')} failures so far)")

    def _where(self, index: int) -> str:
        return "" if len(self.inputs) == 1 else f" from {self.inputs[index]}"

    def summary(self) -> dict:
        """The total LatencyTracker summary; with several inputs, each under 'cameras'."""
        summary = self.total.summary()
        if len(self.inputs) > 1:
            summary["cameras"] = {name: tracker.summary()
                                  for name, tracker in zip(self.inputs, self.trackers)}
        return summary

    def format_summary(self) -> str:
        return self.total.format_summary()
