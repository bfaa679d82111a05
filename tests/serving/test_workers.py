"""Several worker processes on one port: spread load, one consistent /metrics, readiness, restarts, drain."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from model_packages.serving import settings as settings_module
from model_packages.serving.settings import default_workers
from tests.conftest import RunningServer
from tests.support import EXAMPLES, broken

IRIS = EXAMPLES / "iris-classifier"
ROW = [5.1, 3.5, 1.4, 0.2]


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def metric(text: str, pattern: str) -> float:
    found = re.search("^" + pattern + r" (\S+)$", text, re.M)
    assert found is not None, pattern
    return float(found.group(1))


def test_two_workers_share_the_port_and_one_metrics_view(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(IRIS, {"KAIZEN_WORKERS": "2", "KAIZEN_LOG_REQUESTS": "false"})
    workers = children(server.process.pid)
    assert len(workers) == 2
    deadline = time.monotonic() + 30
    while requests.get(server.url + "/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(60):  # new connections: the kernel spreads them over both listeners
        with requests.Session() as session:
            answer = session.post(server.url + "/predict", json={"instances": [ROW] * 5}, timeout=5)
            assert answer.json() == {"predictions": ["setosa"] * 5}
    # Workers publish their drift counters once a second; the leader sums them on its next tick.
    deadline = time.monotonic() + 10
    while metric(requests.get(server.url + "/metrics", timeout=5).text, r"kaizen_drift_window_rows") != 300:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.2)  # and the other worker has read the leader's count
    scrapes = [requests.get(server.url + "/metrics", timeout=5).text for _ in range(6)]
    for text in scrapes:  # whichever worker answers, the totals are the same
        assert metric(text, r'kaizen_requests_total\{route="predict",status="200"\}') == 60
        assert metric(text, r"kaizen_predicted_rows_total") == 300
        assert metric(text, r"kaizen_drift_window_rows") == 300
        assert metric(text, r"kaizen_model_ready") == 1
    check = subprocess.run(["promtool", "check", "metrics"], input=scrapes[0], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    os.kill(workers[0], signal.SIGKILL)  # a crashed worker is replaced and readiness waits for it
    deadline = time.monotonic() + 30
    while set(children(server.process.pid)) & {workers[0]} or len(children(server.process.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while requests.get(server.url + "/ping", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "worker_restarted" in server.logs()

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 5
    assert not any(Path(f"/proc/{pid}").exists() for pid in children_safe(workers))


def test_workers_judge_the_sum_of_their_rows_and_report_one_verdict(
        server_factory: Callable[..., RunningServer]) -> None:
    """Earlier bug: 400 shifted rows split over two workers raised no alarm. Neither worker alone
    reaches KAIZEN_DRIFT_MIN_ROWS; the leader judges the sum and every worker serves its verdict."""
    server = server_factory(IRIS, {"KAIZEN_WORKERS": "2", "KAIZEN_LOG_REQUESTS": "false",
                                   "KAIZEN_DRIFT_WINDOW_ROWS": "400", "KAIZEN_DRIFT_MIN_ROWS": "300",
                                   "KAIZEN_DRIFT_WINDOW_SECONDS": "3600"})
    deadline = time.monotonic() + 30
    while requests.get(server.url + "/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shifted = [[7.9, 2.2, 6.9, 2.5]] * 8  # 8 rows: 2% of a 400-row window, the most one request counts
    for _ in range(50):  # new connections: the kernel spreads them over both workers
        with requests.Session() as session:
            assert session.post(server.url + "/predict", json={"instances": shifted}, timeout=5).status_code == 200
    deadline = time.monotonic() + 15
    while metric(requests.get(server.url + "/metrics", timeout=5).text, r"kaizen_drift_windows_total") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.2)  # the other worker reads the leader's verdict on its scrape
    for text in [requests.get(server.url + "/metrics", timeout=5).text for _ in range(6)]:
        assert metric(text, r"kaizen_drift_windows_total") == 1
        assert metric(text, r"kaizen_drift_alarm") == 1
    lines = [line for line in server.logs().splitlines() if '"event":"drift"' in line]
    assert len(lines) == 1 and '"drift_alarm":1' in lines[0] and '"rows":400' in lines[0]


def children_safe(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}/status").exists() and "zombie" not in
            Path(f"/proc/{p}/status").read_text()]


def test_a_worker_that_cannot_load_stops_the_supervisor(iris_package: Path,
                                                         server_factory: Callable[..., RunningServer]) -> None:
    with pytest.raises(AssertionError, match="exited with 1"):
        server_factory(broken.hash_mismatch(iris_package), {"KAIZEN_WORKERS": "2"})


def test_default_workers_follow_the_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_cgroup_cpus", lambda: 0.5)
    assert default_workers() == 1
    monkeypatch.setattr(settings_module, "_cgroup_cpus", lambda: 64.0)
    assert default_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(settings_module, "_cgroup_cpus", lambda: None)
    assert default_workers() == len(os.sched_getaffinity(0))


def test_cgroup_v1_and_v2_quota_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")

    def fake(*parts: str) -> Path:
        joined = real(*parts)
        return v2 if str(joined) == "/sys/fs/cgroup/cpu.max" else real(tmp_path / "none")

    monkeypatch.setattr(settings_module, "Path", fake)
    assert settings_module._cgroup_cpus() == 1.5
    v2.write_text("max 100000\n")
    assert settings_module._cgroup_cpus() is None


def test_workers_refuse_a_port_already_in_use(tmp_path: Path) -> None:
    """SO_REUSEPORT would otherwise let the workers share a port another server listens on."""
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {"KAIZEN_MODEL_DIR": str(IRIS), "KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(port),
               "KAIZEN_WORKERS": "2", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        result = subprocess.run([sys.executable, "-m", "model_packages.serving"], env=env, capture_output=True,
                                text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 1 and "port_in_use" in result.stdout


def test_a_worker_starting_beside_a_new_metrics_file_does_not_fail(tmp_path: Path) -> None:
    """Another worker's metrics file exists but is still empty (created, not yet sized): a worker
    starting then, and a scrape then, skip it instead of failing on `struct.error` (seen in CI)."""
    from prometheus_client import values

    from model_packages.serving.metrics import RuntimeMetrics

    (tmp_path / "counter_999.db").write_bytes(b"")
    previous = values.ValueClass
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    try:
        values.ValueClass = values.get_value_class()  # the multiprocess value files, as a worker has them
        metrics = RuntimeMetrics(multiprocess_dir=tmp_path)
        metrics.rows.inc(3)
        text = metrics.render().decode()
    finally:
        values.ValueClass = previous
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert metric(text, "kaizen_predicted_rows_total") == 3.0


def test_the_first_worker_to_fail_loading_names_the_failure(tmp_path: Path) -> None:
    """Worker 1 may fail before worker 0, which the supervisor then stops mid-load (seen in CI): the
    report goes to whichever fails first, once, not to a fixed index."""
    from model_packages.serving.workers import WorkerContext

    (tmp_path / "ready").write_bytes(b"\x00\x00")
    second, first = WorkerContext(1, 2, tmp_path), WorkerContext(0, 2, tmp_path)
    assert second.claim_failure_report() is True
    assert first.claim_failure_report() is False
    assert second.claim_failure_report() is False


NEXT_EXIT_SCENARIO = """
import os, subprocess, sys, time
from model_packages.serving.workers import _next_exit

reaped = subprocess.Popen(["true"])
reaped.wait()  # reaped by Popen (what the SIGTERM handler's poll() does): os.wait() never returns it
failing = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
children = {0: reaped, 1: failing}
first = _next_exit(children)
del children[0]
second = _next_exit(children)
del children[1]
gone = subprocess.Popen(["true"])
os.waitpid(gone.pid, 0)  # reaped behind Popen's back: os.wait() raises ChildProcessError
third = _next_exit({0: gone})
print(first, second, third)
"""


def test_the_supervisor_sees_a_worker_that_poll_already_reaped() -> None:
    """The SIGTERM handler's `poll()` reaps a worker that has exited; the supervisor's wait must
    still see it (it raised `ChildProcessError: No child processes` instead, seen in CI)."""
    import sys

    result = subprocess.run([sys.executable, "-c", NEXT_EXIT_SCENARIO], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(0,", "0)", "(1,", "3)", "(0,", "0)"]
