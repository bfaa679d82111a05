"""Test support shared by tests/ and bench/ (never installed with the package): the checkout's paths,
loopback ports, and the one rule for a tool or service a test needs but cannot find.

The port helpers are the ones the code uses (`LocalRegistry` picks `free_port`, the local target's
providers check `port_is_free`), so tests and code agree on what "free" means.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from infra.local.docker_ops import port_is_free
from model_packages.image.localregistry import free_port

__all__ = ["EXAMPLES", "ROOT", "free_port", "free_ports", "moto_threaded", "peak_rss_kb", "port_is_free",
           "unavailable"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (all probes held open together, so none repeats)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(n)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def peak_rss_kb(proc: subprocess.Popen[Any]) -> int:
    """`proc`'s peak resident set (kB, VmHWM of its own address space) polled until it exits;
    ru_maxrss would also count the forked copy of the parent's memory before exec."""
    status = Path(f"/proc/{proc.pid}/status")
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            peak = max(peak, int(status.read_text().split("VmHWM:")[1].split()[0]))
        time.sleep(0.02)
    return peak


def unavailable(reason: str, *, ci: str | None = None) -> NoReturn:
    """A tool or service the test needs is missing: skip on a developer machine, fail in CI (env `CI`
    set), where scripts/setup.sh and .ci/run provide everything. `ci` is the failure message there
    (default: "CI must provide this: <reason>")."""
    import pytest  # here, so bench scripts can import the paths without pytest

    if os.environ.get("CI"):
        pytest.fail(ci or f"CI must provide this: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def moto_threaded() -> Iterator[str]:
    """A moto server in this process on a free loopback port; yields its URL, stops it after."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
