"""A private ROS 2 domain for the node processes a tool or a test starts.

    env = child_environment(claim_domain_id())     # for subprocess.Popen(..., env=env)
    configure_this_process(claim_domain_id())      # before this process's rclpy.init

The demo, the benchmarks and the tests start segmentation nodes, players and evaluators
as child processes. Two such runs on one machine (a test suite next to a demo, two
pytest processes) must never see each other's topics, so each claims a ROS_DOMAIN_ID of
its own: an exclusive flock on <tmp>/uda_seg_ros_domains/<id>.lock, held for the life of
the process (the open lock file is the claim; the kernel drops it when the process
ends, however it ends). Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE
LOCALHOST; the older ROS_LOCALHOST_ONLY and ROS_STATIC_PEERS are removed so they cannot
widen it again). The node itself never calls this: which domain it joins is the
business of whoever starts it.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import IO

# Fast DDS derives its UDP ports from the domain id (7400 + 250 x id + participant offsets):
# up to about 100 they stay below Linux's ephemeral range (32768 on). Domain 0, everyone's
# default, is left to everyone else.
DOMAINS = range(1, 101)
LOCK_DIR = Path(tempfile.gettempdir()) / "uda_seg_ros_domains"
# Overridden by the settings a node process must have, whatever the parent's environment.
WIDER_DISCOVERY = ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS")

_claim: tuple[int, IO[str]] | None = None  # (domain, open lock file) of this process


class NoFreeDomain(RuntimeError):
    """Every domain in DOMAINS is held by another process."""


def claim_domain_id(*, from_environment: bool = False) -> int:
    """This process's ROS_DOMAIN_ID for the processes it starts.

    With `from_environment`, a ROS_DOMAIN_ID already set wins (a user who picked a domain
    for the demo gets it). Otherwise the first free domain from a point that depends on
    the process id, claimed once and returned on every later call.
    """
    global _claim
    if from_environment and os.environ.get("ROS_DOMAIN_ID", "").strip():
        return int(os.environ["ROS_DOMAIN_ID"])
    if _claim is not None:
        return _claim[0]
    LOCK_DIR.mkdir(exist_ok=True)
    ids = list(DOMAINS)
    start = os.getpid() % len(ids)
    for domain in ids[start:] + ids[:start]:
        lock = open(LOCK_DIR / f"{domain}.lock", "w")  # noqa: SIM115 - held open: the claim
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        _claim = (domain, lock)
        return domain
    raise NoFreeDomain(f"every ROS domain {DOMAINS.start}-{DOMAINS.stop - 1} is held by another "
                       f"process (locks in {LOCK_DIR}); set ROS_DOMAIN_ID")


def child_environment(domain: int, extra: Mapping[str, str] | None = None,
                      base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) for a ROS child process on `domain`: discovery on this
    machine, logs unbuffered and uncoloured (they go to files), then `extra` on top."""
    env = dict(os.environ if base is None else base)
    configure_this_process(domain, env)
    env.update({"PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
                "RCUTILS_COLORIZED_OUTPUT": "0"})
    env.update(extra or {})
    return env


def configure_this_process(domain: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Point `environ` (default: this process's, read by its rclpy.init) at `domain`, with
    discovery on this machine only."""
    env = os.environ if environ is None else environ
    env["ROS_DOMAIN_ID"] = str(domain)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    for name in WIDER_DISCOVERY:
        env.pop(name, None)
