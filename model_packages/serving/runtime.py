"""The model's life in one process, whatever serves HTTP: load, ready, drift, drain, close.

Both transports drive it the same way (`server.Server` and the ASGI adapter `asgi.AsgiApp`):

    runtime = Runtime(settings, log, worker)      # builds the App: health checks answer at once (503)
    runner = runtime.load()                       # off the event loop; raises PackageError
    runtime.start(runner)  | runtime.fail(error)  # ready (200), drift on | the one load-failure report
    runtime.drain()                               # SIGTERM: readiness 503, the transport drains
    runtime.close()                               # drift off, capture finished, `stopped`

Anchors: cog's `PredictionRunner.setup` and its `Health` states, MLServer's `DataPlane`.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from enum import Enum
from typing import TYPE_CHECKING

from model_packages.drift import Verdict
from model_packages.errors import PackageError
from model_packages.serving import contract
from model_packages.serving.app import App
from model_packages.serving.drift import DriftMonitor
from model_packages.serving.logs import JsonLog
from model_packages.serving.runner import Runner, load_runner
from model_packages.serving.settings import Settings

if TYPE_CHECKING:
    from model_packages.serving.workers import WorkerContext

LOG_FLUSH_SECONDS = 0.5


class Health(Enum):
    """Where the model is in its life; the value is what readiness answers (503) when not READY."""

    STARTING = "model is not loaded yet"
    READY = "ready"
    FAILED = "the model failed to load"
    DRAINING = "shutting down"


def build_runner(settings: Settings, worker: WorkerContext | None = None) -> Runner:
    """Load and verify the package, attach drift statistics (shared across workers), warm the model
    up; every failure is one PackageError (`runner.load_runner`)."""
    return load_runner(
        settings.model_dir, drift=settings.drift, serve_with=settings.serve_with,
        share_dir=worker.drift_dir if worker else None, worker=worker.index if worker else 0,
    )


class Runtime:
    """One process's model: its `App`, its health, its drift timer and the log lines of its life."""

    def __init__(self, settings: Settings, log: JsonLog | None = None, worker: WorkerContext | None = None) -> None:
        self.settings = settings
        self.log = log or JsonLog()
        self.worker = worker  # one of several worker processes sharing the port (`workers.py`)
        self.app = App(settings, self.log, metrics=worker.metrics() if worker else None)
        self.app.readiness = self.not_ready
        self.health = Health.STARTING
        self.exit_code = 0
        self._started = time.perf_counter()

    def load(self) -> Runner:
        """Build the runner (blocking: call it off the event loop); raises PackageError."""
        return build_runner(self.settings, self.worker)

    def start(self, runner: Runner) -> None:
        """Serve the loaded model: the App answers predictions, drift runs, readiness turns 200."""
        self.app.set_runner(runner)
        self._start_drift(runner.drift)
        tune_gc()
        self.health = Health.READY
        if self.worker is not None:
            self.worker.set_ready(True)
        self.log.event("ready", seconds=round(time.perf_counter() - self._started, 3))
        self.log.flush()

    def fail(self, error: PackageError) -> int:
        """Report a package that did not load; returns the exit code (1)."""
        # Every worker loads the same package: the first to fail reports it, the others say so
        # under another name, so a bad package is one `model_load_failed` line.
        first = self.worker is None or self.worker.claim_failure_report()
        self.log.event("model_load_failed" if first else "worker_load_failed", error=str(error))
        self.log.flush()
        self.health = Health.FAILED
        self.exit_code = 1
        return self.exit_code

    def drain(self) -> None:
        """SIGTERM: readiness answers 503 so balancers stop sending; requests are still answered."""
        if self.health is not Health.FAILED:
            self.health = Health.DRAINING
        if self.worker is not None:
            self.worker.set_ready(False)

    def close(self) -> None:
        """After the last answer: stop drift, finish data capture, log `stopped` with the exit code."""
        if self.app.runner is not None:
            self.app.runner.drift.stop()
        self.app.close()
        self.log.event("stopped", exit_code=self.exit_code)
        self.log.flush()

    def not_ready(self) -> str | None:
        """None when ready to serve, else the reason (readiness answers it with 503)."""
        if self.health is not Health.READY:
            return self.health.value
        if self.worker is not None and not self.worker.all_ready():
            return "not every worker is ready yet"
        return None

    async def flush_logs(self) -> None:
        """The log buffer's timer (request lines are buffered to keep the request path cheap)."""
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            self.log.flush()

    # -- drift --------------------------------------------------------------------------------
    def _start_drift(self, drift: DriftMonitor) -> None:
        """Start the drift timer; the leader logs the start-up thresholds once and a `drift` line per
        closed window (what the clouds' log-based alarms read: `drift_alarm` is 0 or 1)."""
        if not drift.enabled:
            return
        if drift.leader:
            config = drift.config
            self.log.event("drift_calibrated", false_alarm_days=config.false_alarm_days,
                           window_seconds=config.window_seconds, window_rows=config.window_rows,
                           min_rows=config.min_rows, alpha=config.alpha,
                           thresholds={k: round(v, 3) for k, v in drift.nominal_thresholds.items()})
            drift.on_verdict = self._log_verdict
        drift.on_error = lambda message: self.log.event("drift_error", error=message)
        drift.start()

    def _log_verdict(self, verdict: Verdict) -> None:
        features = sorted(verdict.features.items(), key=lambda item: -item[1].statistic / max(item[1].threshold, 1e-9))
        self.log.event(
            contract.DRIFT_EVENT, **{contract.DRIFT_ALARM_FIELD: int(bool(verdict.alarm)),
                                     contract.DRIFT_STATISTIC_FIELD: round(verdict.statistic, 4)},
            rows=verdict.rows, alpha=verdict.alpha,
            drifting=[name for name, score in features if score.alarm],
            features={name: {"statistic": round(score.statistic, 3), "threshold": round(score.threshold, 3),
                             "psi": round(score.psi, 4)} for name, score in features[:20]},
        )


def tune_gc() -> None:
    """Freeze the loaded model's objects out of the collector, collect young objects less often, switch faster.

    A full collection holds the GIL; after a big batch it used to scan every object of the model and the
    request (tens of ms), which is what delayed health checks most once inference left the event loop.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # The event loop gives up the GIL at every poll; while the inference thread runs, getting it back
    # takes up to one switch interval (5 ms by default) per loop iteration. 1 ms keeps health checks quick.
    sys.setswitchinterval(0.001)
