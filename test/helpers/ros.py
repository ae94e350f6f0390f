"""Shared helpers for tests that talk ROS 2 across processes (node tests, bag tests).

- `ros_env()`: os.environ for a child process on this test process's own ROS_DOMAIN_ID
  (uda_seg_tools.ros_domain, the demo's too: parallel pytest runs and a demo on one
  machine never see each other's topics), discovery on localhost, one torch thread;
- `RosClient`: an rclpy context + node + executor spinning in a background thread, with
  `publisher`, `collect` (a subscription that keeps messages), `call` (a service) and
  `wait_for`;
- `NodeProcess`: a node subprocess with its output in a file, `stop(signal)` -> rc;

    client = RosClient()            # sets up this process for domain_id()
    proc = NodeProcess.start([sys.executable, "-m", "uda_seg_ros.segmentation_node",
                              "--ros-args", "-p", f"model_path:={ckpt}"], tmp_path / "node.log")
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uda_seg_tools.ros_domain import child_environment, claim_domain_id, configure_this_process


def ros_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ROS child process: our domain, localhost discovery, unbuffered logs,
    and one torch thread unless OMP_NUM_THREADS says otherwise (two cores shared by the
    test process and the node)."""
    threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return child_environment(claim_domain_id(), {**threads, **(extra or {})})


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(interval)


class Collector:
    """Messages received on one subscription, in order, thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.messages: list[Any] = []
        self.arrivals: list[float] = []  # time.time() of each arrival

    def __call__(self, msg: Any) -> None:
        with self._lock:
            self.messages.append(msg)
            self.arrivals.append(time.time())

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.messages)

    def timed(self) -> list[tuple[Any, float]]:
        """(message, time.time() of arrival) pairs."""
        with self._lock:
            return list(zip(self.messages, self.arrivals))

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.arrivals.clear()

    def wait_for(self, predicate: Callable[[Any], bool] = lambda m: True, timeout: float = 10.0,
                 message: str = "a matching message") -> Any:
        """The first message so far (or to come) for which `predicate` is true."""
        def find():
            return next((m for m in self.snapshot() if predicate(m)), None)
        return wait_for(find, timeout, message=message)


class RosClient:
    """A private rclpy context with one node, spun in a background thread."""

    def __init__(self, name: str = "uda_seg_test_client"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        configure_this_process(claim_domain_id())
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=claim_domain_id())
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def publisher(self, msg_type: Any, topic: str, qos: Any = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type: Any, topic: str, qos: Any = 10) -> Collector:
        collector = Collector()
        collector.subscription = self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def unsubscribe(self, collector: Collector) -> None:
        self.node.destroy_subscription(collector.subscription)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        """Call service `name` (waiting for it first) and return the response."""
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} did not appear within {timeout} s")
        future = client.call_async(request)
        wait_for(future.done, timeout, message=f"the response of {name}")
        return future.result()

    def wait_for_subscriber(self, publisher, timeout: float = 20.0) -> None:
        wait_for(lambda: publisher.get_subscription_count() > 0, timeout,
                 message=f"a subscriber on {publisher.topic_name}")

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)


class NodeProcess:
    """A ROS node in a child process; stdout+stderr go to `log_path` (no pipe to fill)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def start(cls, argv: list[str], log_path: str | Path, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> NodeProcess:
        log_path = Path(log_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    env=env or ros_env(), cwd=cwd)
        return cls(proc, log_path)

    @staticmethod
    def python_module(module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float = 120.0) -> None:
        def seen():
            if text in self.output():
                return True
            if not self.alive():
                raise RuntimeError(f"node exited with {self.proc.returncode} before printing "
                                   f"{text!r}:\n{self.output()[-3000:]}")
            return False
        wait_for(seen, timeout, interval=0.1, message=f"{text!r} in {self.log_path}")

    def send(self, sig: int = signal.SIGINT) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0, what: str = "exit") -> int:
        """The exit status; kill (and fail loudly) if the process hangs."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks()
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(f"node did not {what} within {timeout} s; its log (a node run "
                               f"by uda_seg_ros.process ends it with every thread's stack, "
                               f"SIGUSR1):\n{self.output()[-6000:]}") from None

    def dump_stacks(self, settle_s: float = 2.0) -> None:
        """Ask the node for every thread's stack (SIGUSR1, see uda_seg_ros.process): what a
        hung node waits for lands in its log before it is killed."""
        if self.alive():
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(settle_s)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit status (stop several at once with send + wait)."""
        self.send(sig)
        return self.wait(timeout, what=f"exit on {signal.Signals(sig).name}")
