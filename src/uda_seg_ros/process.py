"""One node in one process: arguments, signals, start-up, spinning and a clean stop.

    sys.exit(run_node(SegmentationNode, "uda_segmentation"))

Exit status 0 after SIGINT or SIGTERM, whenever it comes:
- while the node starts (params, model load, warm-up): start-up is abandoned at once,
  "stopped while starting" is logged, no traceback;
- while it runs: the executor stops, the node closes (its summary line, stats_file);
- while it closes: ignored. A double Ctrl-C, or a non-interactive `ros2 launch` that
  forwards SIGINT on top of the process group's, must not cut the summary short.

Exit status 1, with one line saying why, when the node cannot start: a params file that
is missing or not valid YAML (checked before rclpy reads it, so no traceback from
`rclpy.init`), malformed ROS arguments, or a parameter or model the node refuses.

rclpy's own handlers (installed by `rclpy.init`) shut the context down on SIGINT and
SIGTERM, then chain to the Python handlers that were there before; `StopSignals` installs
those first, so the chain ends in a flag (or, during start-up, in `StartInterrupted`)
instead of a KeyboardInterrupt in whatever code happens to run.

SIGUSR1 prints every thread's Python stack to stderr and leaves the node running
(`kill -USR1 <pid>`): what a node that hangs is waiting for, without a debugger.
"""
from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node

from uda_seg_ros.transport import use_large_frame_transport

try:  # Humble and later
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - older rclpy
    ExternalShutdownException = RuntimeError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STACKS_SIGNAL = signal.SIGUSR1  # every thread's stack to stderr; the node runs on
# How long the executor waits before it looks at the stop flag again (spin_until_stopped).
SPIN_TICK_S = 0.25


class StartInterrupted(BaseException):
    """SIGINT / SIGTERM arrived while the node was starting (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way swallows it)."""


class StopSignals:
    """Python handlers for SIGINT and SIGTERM that record the signal; while `starting`
    is set, the first one also raises StartInterrupted in the main thread."""

    def __init__(self):
        self.received: list[str] = []
        self.starting = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        if self.starting:
            self.starting = False
            raise StartInterrupted(self.received[-1])

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def ignore_from_now(self) -> None:
        """Once the node has closed: SIG_IGN, which the interpreter keeps while it winds down
        (it puts SIG_DFL back in place of a Python handler during finalisation, so a late
        second Ctrl-C would otherwise end a clean stop with exit -2)."""
        self.starting = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def params_files(args: Sequence[str]) -> list[str]:
    """The files given with --params-file inside --ros-args sections."""
    files, in_ros, it = [], False, iter(args)
    for arg in it:
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg == "--params-file":
            files.append(next(it, ""))
        elif in_ros and arg.startswith("--params-file="):
            files.append(arg.split("=", 1)[1])
    return files


def check_params_file(path: str) -> str | None:
    """Why `path` cannot be a ROS 2 params file (one line), or None when it can."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return f"params file {path}: cannot read it ({exc.strerror or exc})"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return f"params file {path}: not valid YAML{where}: {problem}"
    if not _holds_parameters(data):
        return (f"params file {path}: expected '<node name or /**>: ros__parameters: "
                f"{{name: value, ...}}' (node names may sit under namespaces)")
    return None


def _holds_parameters(entry) -> bool:
    """A mapping of node names (or namespaces, nested) down to `ros__parameters` mappings."""
    if not isinstance(entry, dict) or not entry:
        return False
    if "ros__parameters" in entry:
        return isinstance(entry["ros__parameters"], dict)
    return all(_holds_parameters(value) for value in entry.values())


def first_line(exc: BaseException) -> str:
    """`Type: first line of the message`, without rcl's ', at /path/file.c:123' trail."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text.split(", at /")[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fatal(name: str, text: str) -> None:
    rclpy.logging.get_logger(name).fatal(f"cannot start: {text}")


def _info(name: str, text: str) -> None:
    print(f"[INFO] [{name}]: {text}", file=sys.stderr, flush=True)


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Start the node `make_node()` builds, spin it until SIGINT / SIGTERM / an external
    shutdown, close it (its `close()`), and return the exit status."""
    stop = StopSignals()
    faulthandler.register(STACKS_SIGNAL, all_threads=True, chain=False)
    try:
        for path in params_files(sys.argv if args is None else args):
            problem = check_params_file(path)
            if problem:
                _fatal(name, problem)
                return 1
        profile = use_large_frame_transport()
        if profile:
            _info(name, f"Fast DDS transports: {profile} (a shared-memory segment that holds "
                        f"camera frames)")
        try:
            rclpy.init(args=args)
        except Exception as exc:  # noqa: BLE001 - RCLError: arguments rcl cannot parse
            _fatal(name, first_line(exc))
            return 1
        try:
            return _start_and_spin(make_node, name, stop)
        except StartInterrupted as exc:  # landed between two steps of the start-up
            _info(name, f"stopped while starting ({exc}); exit 0")
            return 0
        finally:
            rclpy.try_shutdown()
    finally:
        # A signal that comes while the interpreter winds down (torch takes seconds) must
        # not end a clean stop with a traceback or a signal exit.
        stop.ignore_from_now()


def spin_until_stopped(executor: Executor, node: Node, stop: StopSignals,
                       tick_s: float = SPIN_TICK_S) -> None:
    """Spin until a stop signal is recorded or the context shuts down.

    rclpy's own SIGINT / SIGTERM handler normally wakes the executor by shutting the
    context down, but not always: once in CI a managed node in `finalized` slept through
    SIGINT for 60 s in `executor.spin()` (rcl_wait, no timeout), while the Python handler,
    which only runs when the main thread is back in the interpreter, had no chance to.
    Waiting in ticks of `tick_s` lets the recorded signal end the loop whatever rclpy's
    handler did; the cost is one empty wake-up per tick.
    """
    while not stop.requested and node.context.ok():
        executor.spin_once(timeout_sec=tick_s)


def _start_and_spin(make_node: Callable[[], Node], name: str, stop: StopSignals) -> int:
    node = None
    try:
        stop.starting = True
        # Made before the node, not by rclpy.spin: a signal landing while spin built its
        # executor left a half-made one ('no attribute _sigint_gc' printed from __del__).
        executor = SingleThreadedExecutor()
        node = make_node()
        stop.starting = False
    except StartInterrupted as exc:
        _info(name, f"stopped while starting ({exc}); exit 0")
        return 0
    except Exception as exc:  # noqa: BLE001 - a node that cannot start says why in one line
        stop.starting = False
        if stop.requested:  # e.g. 'context is invalid' after SIGTERM shut rclpy down
            _info(name, f"stopped while starting ({stop.received[0]}); exit 0")
            return 0
        _fatal(name, first_line(exc))
        return 1
    finally:
        stop.starting = False
    try:
        executor.add_node(node)
        spin_until_stopped(executor, node, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal that lands while the executor builds its wait set surfaces as an
        # RCLError ("context is not valid") instead of ExternalShutdownException.
        if node.context.ok() and not stop.requested:
            raise
    finally:
        why = stop.received[0] if stop.received else "external shutdown"
        _info(name, f"stopping ({why}): finishing the frame in flight, then the summary")
        node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    return 0
