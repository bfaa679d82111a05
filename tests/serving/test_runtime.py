"""The model's life apart from the transport (`runtime.Runtime`), and the ASGI adapter driving the same one."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_packages.errors import PackageError
from model_packages.serving.asgi import AsgiApp
from model_packages.serving.drift import DriftConfig
from model_packages.serving.logs import JsonLog
from model_packages.serving.runtime import Health, Runtime
from model_packages.serving.settings import Settings
from model_packages.serving.workers import WorkerContext
from tests.serving.test_app import IRIS, call


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """`Runtime.start` tunes the collector for a server process; give the test process its own back."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def _events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _runtime(model_dir: Path, worker: WorkerContext | None = None) -> tuple[Runtime, io.StringIO]:
    stream = io.StringIO()
    settings = Settings(model_dir=model_dir, drift=DriftConfig(window_rows=1000, min_rows=10))
    return Runtime(settings, JsonLog(stream), worker), stream


def test_life_of_a_model() -> None:
    runtime, stream = _runtime(IRIS)
    app = runtime.app
    assert call(app, "GET", "/health/ready") == (503, {"error": "model is not loaded yet"})
    assert call(app, "GET", "/health/live")[0] == 200
    runtime.start(runtime.load())
    assert runtime.health is Health.READY
    assert call(app, "GET", "/ping")[1] == {"status": "ready", "model": "iris-classifier", "version": "1.0.0"}
    assert gc.get_threshold()[0] == 50_000 and sys.getswitchinterval() == pytest.approx(0.001)
    assert app.runner is not None and app.runner.drift._thread is not None  # the drift timer runs
    runtime.drain()
    assert call(app, "GET", "/v2/health/ready") == (503, {"error": "shutting down"})
    assert call(app, "POST", "/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})[0] == 200  # still answered
    call(app, "POST", "/predict", b"{")  # a request line, flushed by close
    runtime.close()
    assert app.runner.drift._thread is None
    events = [e["event"] for e in _events(stream)]
    assert events[:2] == ["drift_calibrated", "ready"] and events[-2:] == ["request", "stopped"]
    calibrated = _events(stream)[0]
    assert calibrated["window_rows"] == 1000 and set(calibrated["thresholds"]) >= {"petal_length"}


def test_drift_verdicts_are_the_line_the_clouds_read() -> None:
    runtime, stream = _runtime(IRIS)
    runtime.start(runtime.load())
    assert runtime.app.runner is not None
    drift = runtime.app.runner.drift
    drift.stop()  # drive the timer by hand
    call(runtime.app, "POST", "/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]] * 30})
    drift.clock = lambda: time.monotonic() + 7200  # an hour later: the window's time is up
    assert drift.tick() is not None
    runtime.log.flush()
    line = next(e for e in _events(stream) if e["event"] == "drift")
    assert line["drift_alarm"] == 1 and line["drift_statistic"] >= 1 and line["rows"] >= 10
    assert "petal_length" in line["drifting"] and set(line["features"]["petal_length"]) == {
        "statistic", "threshold", "psi"}


def _run_dir(path: Path) -> Path:
    """What the supervisor prepares for two workers (`workers._prepare`)."""
    (path / "ready").write_bytes(b"\x00\x00")
    (path / "drift").mkdir()
    (path / "metrics").mkdir()
    return path


def test_a_package_that_does_not_load_is_reported_once(tmp_path: Path) -> None:
    _run_dir(tmp_path)
    reports = []
    for index in (1, 0):  # whichever worker fails first names the failure
        runtime, stream = _runtime(tmp_path / "missing", WorkerContext(index, 2, tmp_path))
        with pytest.raises(PackageError) as error:
            runtime.load()
        assert runtime.fail(error.value) == 1 and runtime.exit_code == 1
        runtime.drain()
        assert call(runtime.app, "GET", "/ping") == (503, {"error": "the model failed to load"})
        reports.append(_events(stream)[-1])
    assert [r["event"] for r in reports] == ["model_load_failed", "worker_load_failed"]
    assert "not a model package" in reports[0]["error"]


def test_readiness_waits_for_every_worker(tmp_path: Path) -> None:
    worker = WorkerContext(0, 2, _run_dir(tmp_path))
    runtime, _ = _runtime(IRIS, worker)
    runtime.start(runtime.load())
    assert call(runtime.app, "GET", "/ping") == (503, {"error": "not every worker is ready yet"})
    WorkerContext(1, 2, tmp_path).set_ready(True)
    assert call(runtime.app, "GET", "/ping")[0] == 200
    runtime.drain()
    assert not worker.all_ready()
    runtime.close()


async def _lifespan(app: AsgiApp, *messages: str) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in messages:
        inbox.put_nowait({"type": message})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, inbox.get, send)
    return sent


async def _get(app: AsgiApp, path: str) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return sent[0]["status"]


def test_asgi_adapter_runs_the_same_life(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)  # JsonLog's default stream

    async def scenario() -> tuple[int, list[dict[str, Any]], int, list[dict[str, Any]]]:
        app = AsgiApp(Settings(model_dir=IRIS))
        before = await _get(app, "/health/ready")
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        inbox.put_nowait({"type": "lifespan.startup"})
        life = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
        while not sent:
            await asyncio.sleep(0.01)
        after = await _get(app, "/health/ready")
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await life
        broken = AsgiApp(Settings(model_dir=tmp_path))
        return before, sent, after, await _lifespan(broken, "lifespan.startup")

    loop = asyncio.new_event_loop()  # not asyncio.run: it unsets the thread's loop, which later tests' mocks use
    try:
        before, sent, after, failed = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert (before, after) == (503, 200)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert failed[0]["type"] == "lifespan.startup.failed" and "not a model package" in failed[0]["message"]
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["drift_calibrated", "ready", "stopped", "model_load_failed"]
