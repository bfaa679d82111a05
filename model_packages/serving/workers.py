"""Several worker processes on one port: a small supervisor, SO_REUSEPORT listeners, shared state.

`KAIZEN_WORKERS` (default: the container's CPU quota) processes each run the whole runtime and bind
the port with SO_REUSEPORT, so the kernel spreads connections across them. The supervisor (PID 1 in
the container) forwards SIGTERM to all of them and waits for their drains, restarts a worker that
dies, and stops everything with the worker's exit code when one fails to start (a bad package or
port). Workers share a per-run directory: prometheus_client multiprocess files, each worker's drift
histogram, and a readiness board of one byte per worker (readiness is green only when all are 1).
"""

from __future__ import annotations

import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model_packages.serving.logs import JsonLog
from model_packages.serving.settings import Settings

if TYPE_CHECKING:
    from model_packages.serving.metrics import RuntimeMetrics

INDEX_ENV = "KAIZEN_WORKER_INDEX"
RUN_DIR_ENV = "KAIZEN_RUN_DIR"
STARTUP_FAILURES = (1, 2)  # a worker exiting with these could not load the package or read its settings
MAX_RESTARTS = 10  # per minute; more means the workers crash as they start: give up


@dataclass
class WorkerContext:
    """What one worker knows of its siblings."""

    index: int
    count: int
    run_dir: Path

    @classmethod
    def from_env(cls) -> WorkerContext | None:
        if INDEX_ENV not in os.environ:
            return None
        return cls(int(os.environ[INDEX_ENV]), int(os.environ["KAIZEN_WORKERS"]), Path(os.environ[RUN_DIR_ENV]))

    def __post_init__(self) -> None:
        with open(self.run_dir / "ready", "r+b") as board:
            self._board = mmap.mmap(board.fileno(), self.count)
        self._all = b"\x01" * self.count

    @property
    def drift_dir(self) -> Path:
        return self.run_dir / "drift"

    def metrics(self) -> RuntimeMetrics:
        from model_packages.serving.metrics import RuntimeMetrics

        return RuntimeMetrics(multiprocess_dir=self.run_dir / "metrics")

    def set_ready(self, ready: bool) -> None:
        self._board[self.index] = 1 if ready else 0

    def all_ready(self) -> bool:
        return self._board[: self.count] == self._all

    def claim_failure_report(self) -> bool:
        """True for the first worker to fail loading: it names the failure, the others defer to it.

        Whichever worker fails first may not be worker 0 (the supervisor stops the rest as soon as one
        fails), so the claim is an exclusive create in the run directory, not an index.
        """
        try:
            os.close(os.open(self.run_dir / "load_failed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def _prepare(count: int) -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix="kaizen-run-"))
    (run_dir / "metrics").mkdir()
    (run_dir / "drift").mkdir()
    (run_dir / "ready").write_bytes(b"\x00" * count)
    return run_dir


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
        probe.bind((host, port))


def _next_exit(children: dict[int, subprocess.Popen[bytes]]) -> tuple[int, int]:
    """The index and exit code of the next worker to end.

    `Popen.poll()` (in the SIGTERM handler) reaps a worker that has already exited, and `os.wait()`
    never returns it then (it raises ChildProcessError once no other child is left, as seen in CI):
    a reaped worker's code is on its Popen object, so that is looked at first.
    """
    while True:
        done = next(((i, c.returncode) for i, c in children.items() if c.returncode is not None), None)
        if done is not None:
            return done
        try:
            pid, status = os.wait()
        except ChildProcessError:
            for child in children.values():
                if child.poll() is None:  # not a child of ours any more: nothing to wait for
                    child.returncode = 1
            continue
        for child in children.values():
            if child.pid == pid:
                child.returncode = os.waitstatus_to_exitcode(status)


def supervise(settings: Settings, log: JsonLog | None = None) -> int:
    """Run `settings.workers` workers until SIGTERM; returns the exit code for the container."""
    from prometheus_client.multiprocess import mark_process_dead

    log = log or JsonLog()
    count = settings.workers
    try:  # SO_REUSEPORT would let the workers join another server's port silently: refuse a port in use first
        _check_port_free(settings.host, settings.port)
    except OSError as error:
        log.event("port_in_use", host=settings.host, port=settings.port, error=str(error))
        log.flush()
        return 1
    try:
        run_dir = _prepare(count)
    except OSError as error:  # e.g. a read-only file system without a writable /tmp
        from model_packages.serving.server import run

        log.event("workers_unavailable", error=str(error), workers=1)
        log.flush()
        return run(settings)
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "AIP_HTTP_PORT")}
    env.update(KAIZEN_MODEL_DIR=str(settings.model_dir), KAIZEN_HOST=settings.host, KAIZEN_PORT=str(settings.port),
               KAIZEN_WORKERS=str(count), KAIZEN_RUN_DIR=str(run_dir),
               PROMETHEUS_MULTIPROC_DIR=str(run_dir / "metrics"))
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(index: int) -> None:
        children[index] = subprocess.Popen([sys.executable, "-m", "model_packages.serving"],
                                           env={**env, INDEX_ENV: str(index)})

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.event("workers", count=count, run_dir=str(run_dir))
    log.flush()
    exit_code = 0
    restarts: list[float] = []
    try:
        for index in range(count):
            spawn(index)
        while children:
            index, code = _next_exit(children)
            pid = children[index].pid
            mark_process_dead(pid, str(run_dir / "metrics"))
            with open(run_dir / "ready", "r+b") as board:
                board.seek(index)
                board.write(b"\x00")
            if stopping:
                del children[index]
                exit_code = max(exit_code, code)
                continue
            log.event("worker_exited", worker=index, pid=pid, exit_code=code)
            restarts = [t for t in restarts if t > time.monotonic() - 60] + [time.monotonic()]
            if code in STARTUP_FAILURES or len(restarts) > MAX_RESTARTS:
                log.event("workers_failed", worker=index, exit_code=code)
                log.flush()
                del children[index]
                exit_code = code or 1
                stop(signal.SIGTERM, None)
                continue
            log.flush()
            time.sleep(0.5)
            spawn(index)
            log.event("worker_restarted", worker=index, pid=children[index].pid)
            log.flush()
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
    log.event("stopped", exit_code=exit_code)
    log.flush()
    return exit_code
