"""Drift in the serving path: tumbling windows of fixed-size counters, judged by the calibrated alarm.

The hot path only appends the (sampled) validated matrix and its predictions to a bounded buffer;
binning runs on the drift thread (`start`), woken when the buffer holds FLUSH_ROWS rows and on every
tick, never on a request thread. Memory is constant: the counters (`model_packages.drift.DriftState`)
and a buffer of at most BUFFER_ROWS rows. Should the buffer be full anyway (the drift thread starved
of CPU for as long as it takes requests to bring BUFFER_ROWS - FLUSH_ROWS more rows), a request's
rows are dropped and counted (`dropped_rows`, the `on_drop` callback: kaizen_drift_dropped_rows)
rather than binned inline: drift is a side channel and must not add latency to a request, and a
subset chosen by buffer occupancy, not by value, leaves the calibrated null exact. Without the
thread (tests, tools calling `tick` themselves) observe bins inline at FLUSH_ROWS, as before.

Windows close by count (KAIZEN_DRIFT_WINDOW_ROWS rows) or by time (KAIZEN_DRIFT_WINDOW_SECONDS),
whichever comes first, on a timer thread (never only when a request arrives or /metrics is read).
A window with fewer than KAIZEN_DRIFT_MIN_ROWS rows is not judged: it stays open until it has them;
one that grew past KAIZEN_DRIFT_WINDOW_ROWS before the tick (heavy traffic) is judged on a uniform
random subset of that many rows.
Each window is tested at alpha = its duration / (KAIZEN_DRIFT_FALSE_ALARM_DAYS days), so false
alarms come at the configured rate per unit of time, whatever the traffic.

No single request decides a window: each contributes at most REQUEST_SHARE of it (a big batch is
sampled evenly). Under heavy traffic a window would hold far more rows than it is judged on (it is
thinned to KAIZEN_DRIFT_WINDOW_ROWS at the tick), so each worker keeps a request with probability
`keep` = KEEP_WINDOWS x window rows / the rows offered in the last tick (1 while traffic is below
that): whole requests chosen by a coin, not by value, so the kept rows are as random a sample as
the thinning's and the calibrated null is unchanged, while binning costs a bounded CPU share.
With several worker processes, every worker publishes its cumulative counters
(since it started) to a shared directory on each tick; the leader (worker 0) sums them, takes the
difference from the sum at the previous close as the window, judges it and publishes the verdict,
which every worker's /metrics serves. A row published after a close simply falls in the next window.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.drift import DriftState, Verdict, per_window_alpha
from model_packages.manifest import Manifest

FLUSH_ROWS = 2048  # buffered rows that wake the drift thread to bin them (inline without the thread)
BUFFER_ROWS = 4 * FLUSH_ROWS  # the buffer's bound while the thread runs: beyond it rows are dropped, counted
REQUEST_SHARE = 0.02  # the largest part of a window one request may fill
KEEP_WINDOWS = 2.0  # rows kept per tick and worker, in windows: beyond it requests are sampled
VERDICT_FILE = "verdict.json"
OPEN_FILE = "open-rows"


@dataclass(frozen=True)
class DriftConfig:
    """The drift settings of the runtime (from KAIZEN_DRIFT_* variables)."""

    enabled: bool = True
    window_rows: int = 5000
    window_seconds: float = 3600.0
    min_rows: int = 100
    false_alarm_days: float = 30.0

    @property
    def alpha(self) -> float:
        """The false-alarm probability of a full-length (time-closed) window."""
        return per_window_alpha(self.false_alarm_days, self.window_seconds)

    @property
    def tick_seconds(self) -> float:
        return max(0.05, min(1.0, self.window_seconds / 5))


class DriftMonitor:
    """The runtime's drift hook: counts rows, closes windows on its timer and judges them."""

    def __init__(self, manifest: Manifest, config: DriftConfig | None = None, *, share_dir: Path | None = None,
                 worker: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config = config or DriftConfig()
        self.state = DriftState.from_manifest(manifest)
        self.enabled = config.enabled and self.state.enabled
        self.request_rows = max(1, math.ceil(config.window_rows * REQUEST_SHARE))
        self._counts_predictions = self.state.has_prediction  # else predictions are not even buffered
        self.share_dir = share_dir
        self.worker = worker
        self.leader = worker == 0
        self.clock = clock
        self.on_verdict: Callable[[Verdict], None] | None = None
        self.on_error: Callable[[str], None] | None = None
        self.on_drop: Callable[[int], None] | None = None  # rows dropped because the buffer was full
        self.dropped_rows = 0
        self._last_error = ""
        self._lock = threading.Lock()
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._pending_rows = 0
        shape = self.state.counts.shape
        self.cumulative = np.zeros(shape, dtype=np.int64)  # this worker's rows since start
        self._snapshot: dict[str, tuple[int, np.ndarray]] = {}  # leader: each worker's sum at the last close
        self._window_start = clock()
        self._window = np.zeros(shape, dtype=np.int64)  # leader: the open window (last tick)
        self.windows = 0
        self.last: Verdict | None = None
        self._last_counts: np.ndarray | None = None
        self._verdict_mtime = 0.0
        self._open_published = -1
        self._rng = np.random.default_rng()
        self._open_rows = 0
        self.keep = 1.0  # share of requests binned (see KEEP_WINDOWS), set on each tick
        self._offered = 0  # rows offered since the last tick (kept or not)
        self._offered_since = clock()
        self._coin = random.Random()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by a request that filled FLUSH_ROWS: bin now
        self._woken = False  # the wake-up is pending (requests set the event once per flush)
        self._running = False  # the drift thread bins; requests only append
        self.nominal_thresholds: dict[str, float] = {}
        if self.enabled and self.leader:
            # Computed once at start-up (and recorded): the thresholds of a full window.
            self.nominal_thresholds = self.state.thresholds(config.alpha, config.window_rows)

    # -- hot path ---------------------------------------------------------------------------
    def observe(self, rows: np.ndarray, predictions: np.ndarray | None = None) -> None:
        """Remember a validated matrix and its predictions (an even sample of a big batch)."""
        if not self.enabled or rows.ndim != 2:
            return
        if predictions is not None and (not self._counts_predictions or predictions.ndim != 1
                                        or predictions.shape[0] != rows.shape[0]):
            predictions = None
        if rows.shape[0] > self.request_rows:
            step = math.ceil(rows.shape[0] / self.request_rows)
            rows = rows[::step]
            predictions = predictions[::step] if predictions is not None else None
        n = rows.shape[0]
        self._offered += n  # under the GIL; a lost update only nudges `keep`
        if self.keep < 1.0 and self._coin.random() >= self.keep:
            return
        with self._lock:
            running = self._running
            if running and self._pending_rows + n > BUFFER_ROWS:
                self.dropped_rows += n
                full = dropped = True
            else:
                self._pending.append((rows, predictions))
                self._pending_rows += n
                full, dropped = self._pending_rows >= FLUSH_ROWS, False
            wake = full and running and not self._woken
            self._woken = self._woken or wake
        if wake:
            self._wake.set()  # the drift thread bins
        if dropped and self.on_drop is not None:
            self.on_drop(n)
        elif full and not running:
            self.flush()

    # -- timer ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Bin the buffered rows into this worker's counters."""
        with self._lock:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            self._woken = False
        if not pending:
            return
        counts = np.zeros_like(self.cumulative)
        with_predictions = [(r, p) for r, p in pending if p is not None]
        without = [r for r, p in pending if p is None]
        if with_predictions:
            counts += self.state.count(np.concatenate([r for r, _ in with_predictions]),
                                       np.concatenate([p for _, p in with_predictions]))
        if without:
            counts += self.state.count(np.concatenate(without))
        with self._lock:
            self.cumulative += counts

    def tick(self) -> Verdict | None:
        """One timer step: bin, publish, and (leader) close the window when it is full or old
        enough; returns the verdict of a window it closed."""
        if not self.enabled:
            return None
        self._adjust_keep()
        self.flush()
        self._publish()
        if not self.leader:
            return None
        now = self.clock()
        totals = self._totals()
        window = np.zeros_like(self.cumulative)
        for key, (incarnation, counts) in totals.items():
            previous = self._snapshot.get(key)
            if previous is not None and previous[0] == incarnation:
                window += counts - previous[1]
            else:  # a worker that (re)started since the last close
                window += counts
        with self._lock:
            self._window = window
        rows = int(window[0].sum())
        self._publish_open(rows)
        elapsed = now - self._window_start
        if rows >= self.config.window_rows or elapsed >= self.config.window_seconds:
            if rows == 0:
                self._window_start = now
                return None
            if rows < self.config.min_rows:
                return None  # too few rows to judge: the window stays open
            return self._close(window, totals, now, elapsed)
        return None

    def _adjust_keep(self) -> None:
        """Keep about KEEP_WINDOWS windows' worth of rows per tick: the share for the next tick
        from the rows offered since the last one (scaled to a tick, whatever the timer's lag)."""
        now = self.clock()
        elapsed, offered = now - self._offered_since, self._offered
        self._offered, self._offered_since = 0, now
        if elapsed <= 0:
            return
        per_tick = offered * self.config.tick_seconds / elapsed
        self.keep = min(1.0, KEEP_WINDOWS * self.config.window_rows / per_tick) if per_tick > 0 else 1.0

    def _close(self, window: np.ndarray, totals: dict[str, tuple[int, np.ndarray]], now: float,
               elapsed: float) -> Verdict:
        alpha = per_window_alpha(self.config.false_alarm_days, max(elapsed, 1e-3))
        judged = self._thin(window)
        verdict = self.state.evaluate(alpha, min_rows=self.config.min_rows, counts=judged)
        self._snapshot = {k: (inc, c.copy()) for k, (inc, c) in totals.items()}
        self._window_start = now
        with self._lock:
            self.last = verdict
            self._last_counts = window
            self._window = np.zeros_like(window)
            self.windows += 1
        self._publish_verdict(verdict, window)
        self._publish_open(0)
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        return verdict

    def _thin(self, window: np.ndarray) -> np.ndarray:
        """Under heavy traffic a window holds every row until the next tick: judge a uniform random
        subset of window_rows of them (per feature, multivariate hypergeometric), so the test's
        window size, its tables and its cost stay bounded."""
        rows = int(window[0].sum())
        if rows <= self.config.window_rows:
            return window
        out = np.zeros_like(window)
        for k in range(window.shape[0]):
            if window[k].sum() == rows:
                out[k] = self._rng.multivariate_hypergeometric(window[k], self.config.window_rows)
        return out

    def start(self) -> None:
        """Run the drift thread until `stop`: bin the buffer whenever a request fills FLUSH_ROWS of
        it, and `tick` every config.tick_seconds."""
        if not self.enabled or self._thread is not None:
            return
        with self._lock:
            self._running = True
        self._thread = threading.Thread(target=self._run, name="kaizen-drift", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._running = False

    def _run(self) -> None:
        period = self.config.tick_seconds
        next_tick = time.monotonic() + period
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_tick - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    self.flush()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick += period
                    if next_tick <= now:  # late (a long close): ticks are not made up in a burst
                        next_tick = now + period
                    self.tick()
            except Exception as error:  # drift must never take the server down; say why, once per kind
                message = f"{type(error).__name__}: {error}"
                if message != self._last_error and self.on_error is not None:
                    self.on_error(message)
                self._last_error = message

    # -- sharing between workers ------------------------------------------------------------
    def _key(self) -> str:
        return f"drift-{self.worker}"

    def _publish(self) -> None:
        """Write this worker's cumulative counters for the leader (atomically: write, then rename)."""
        if self.share_dir is None:
            return
        path = self.share_dir / f"{self._key()}.npy"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with self._lock:
            data = np.concatenate([[os.getpid()], self.cumulative.ravel()])
        with open(tmp, "wb") as out:
            np.save(out, data)
        os.replace(tmp, path)

    def _totals(self) -> dict[str, tuple[int, np.ndarray]]:
        """Every worker's cumulative counters (this worker's own, live), keyed by worker."""
        with self._lock:
            totals = {self._key(): (os.getpid(), self.cumulative.copy())}
        if self.share_dir is None:
            return totals
        for path in self.share_dir.glob("drift-*.npy"):
            if path.stem == self._key():
                continue
            try:
                published = np.load(path)
            except (OSError, ValueError, EOFError):
                continue
            if published.shape == (1 + self.cumulative.size,):
                totals[path.stem] = (int(published[0]), published[1:].reshape(self.cumulative.shape))
        return totals

    def _publish_verdict(self, verdict: Verdict, window: np.ndarray) -> None:
        if self.share_dir is None:
            return
        path = self.share_dir / VERDICT_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"windows": self.windows, "verdict": verdict.as_dict(),
                                   "counts": window.tolist()}))
        os.replace(tmp, path)

    def _publish_open(self, rows: int) -> None:
        """The leader's count of rows in the open window, for the other workers' /metrics."""
        if self.share_dir is None or rows == self._open_published:
            return
        self._open_published = rows
        path = self.share_dir / OPEN_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(str(rows))
        os.replace(tmp, path)

    def _load_verdict(self) -> None:
        """Workers other than the leader serve the leader's last verdict and open-window rows."""
        if self.share_dir is None or self.leader:
            return
        try:
            open_rows = int((self.share_dir / OPEN_FILE).read_text())
        except (OSError, ValueError):
            open_rows = None
        if open_rows is not None:
            with self._lock:
                self._open_rows = open_rows
        path = self.share_dir / VERDICT_FILE
        try:
            mtime = path.stat().st_mtime
            if mtime == self._verdict_mtime:
                return
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        self._verdict_mtime = mtime
        self.windows = int(data["windows"])
        self.last = _verdict_from_dict(data["verdict"])
        self._last_counts = np.asarray(data["counts"], dtype=np.int64)

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> tuple[Verdict | None, int, int, np.ndarray | None]:
        """(last verdict, closed windows, rows in the open window, counts of the last closed window)."""
        self._load_verdict()
        with self._lock:
            open_rows = self._open_rows  # the leader's count, read from the shared directory
            if self.leader:
                open_rows = int(self._window[0].sum()) if self.state.enabled else 0
            return self.last, self.windows, open_rows, self._last_counts

    def unseen_fractions(self) -> dict[str, float]:
        """Per categorical feature, the share of the last closed window's values training never saw."""
        _, _, _, counts = self.snapshot()
        out: dict[str, float] = {}
        for k, layout in enumerate(self.state.layouts):
            if layout.kind != "categorical":
                continue
            total = counts[k].sum() if counts is not None else 0
            out[layout.name] = float(counts[k, layout.size - 1] / total) if counts is not None and total else 0.0
        return out


def _verdict_from_dict(data: dict[str, Any]) -> Verdict:
    from model_packages.drift import FeatureScore

    return Verdict(rows=int(data["rows"]), alpha=float(data["alpha"]), alarm=data["alarm"],
                   statistic=float(data["statistic"]),
                   features={name: FeatureScore(**score) for name, score in data["features"].items()})
