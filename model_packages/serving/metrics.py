"""Prometheus metrics of the runtime, on a registry of its own.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
the supervisor) keeps each worker's values in files and every scrape sums them; drift counters are
summed by `DriftMonitor` itself (the leader judges the sum; every worker serves its verdict).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from model_packages.manifest import Manifest
from model_packages.serving.drift import DriftMonitor

disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MMAP_HEADER_BYTES = 8  # a metrics file's used-bytes header; a file shorter than it is still being created


class DriftCollector(Collector):
    """Drift gauges of the last closed window (the leader's verdict, with several workers)."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def collect(self):  # type: ignore[override]
        verdict, windows, open_rows, _ = self.monitor.snapshot()
        judged = verdict if verdict is not None and verdict.alarm is not None else None
        yield GaugeMetricFamily(
            "kaizen_drift_alarm",
            "1 when the last closed drift window failed the calibrated test (false alarms at the configured rate)",
            value=1.0 if judged is not None and judged.alarm else 0.0,
        )
        yield GaugeMetricFamily(
            "kaizen_drift_statistic",
            "Calibrated drift score of the last closed window: max over features of statistic / threshold "
            "(the alarm fires at >= 1; 0 before the first window)",
            value=judged.statistic if judged is not None else 0.0,
        )
        yield CounterMetricFamily("kaizen_drift_windows", "Drift windows closed and judged", value=windows)
        yield GaugeMetricFamily(
            "kaizen_drift_false_alarm_probability", "False-alarm probability the last closed window was tested at",
            value=judged.alpha if judged is not None else self.monitor.config.alpha,
        )
        yield GaugeMetricFamily("kaizen_drift_window_rows", "Rows in the open drift window", value=open_rows)
        # The per-feature test is kaizen_drift_feature_statistic/_threshold: kaizen_drift_statistic is the
        # window's calibrated score (one family cannot mix both meanings).
        families = {
            name: GaugeMetricFamily(f"kaizen_drift_{'feature_' if name in ('statistic', 'threshold') else ''}{name}",
                                    help_text, labels=["feature"])
            for name, help_text in (
                ("psi", "Population Stability Index of a feature over the last closed window"),
                ("js", "Jensen-Shannon distance (base 2) of a feature over the last closed window"),
                ("wasserstein", "Wasserstein-1 distance over the baseline std of a numeric feature, last window"),
                ("statistic", "-log10 of the smallest exact binomial tail probability of a feature's slots"),
                ("threshold", "The statistic at which a feature alarms (calibrated to the false-alarm rate)"),
            )
        }
        if judged is not None:
            for name, score in judged.features.items():
                families["psi"].add_metric([name], score.psi)
                families["js"].add_metric([name], score.js)
                if score.wasserstein is not None:
                    families["wasserstein"].add_metric([name], score.wasserstein)
                families["statistic"].add_metric([name], score.statistic)
                families["threshold"].add_metric([name], score.threshold)
        else:
            for name, threshold in self.monitor.nominal_thresholds.items():
                families["threshold"].add_metric([name], threshold)
        yield from families.values()
        unseen = GaugeMetricFamily(
            "kaizen_feature_unseen_fraction",
            "Share of a categorical feature's values in the last closed window that the training data never had",
            labels=["feature"],
        )
        for name, value in self.monitor.unseen_fractions().items():
            unseen.add_metric([name], value)
        yield unseen


class SettledMultiProcessCollector(MultiProcessCollector):
    """prometheus_client's multiprocess collector, skipping a worker's metrics file in the instant
    between its creation and its first sizing: reading it then raises `struct.error`, which made a
    worker starting beside another fail at start (its registry collects once on registration)."""

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= MMAP_HEADER_BYTES:
                    files.append(path)
            except FileNotFoundError:  # a worker's file removed between glob and stat
                continue
        return self.merge(files, accumulate=True)


class RuntimeMetrics:
    """Request counters, latency histogram, in-flight gauge, model info and drift gauges."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposed = self.registry
        if multiprocess_dir is not None:
            self.exposed = CollectorRegistry(auto_describe=True)
            SettledMultiProcessCollector(self.exposed, str(multiprocess_dir))
        self.requests = Counter(
            "kaizen_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.errors = Counter(
            "kaizen_request_errors", "HTTP error answers (4xx and 5xx) by route and status",
            ["route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "kaizen_request_duration_seconds", "Request latency by route", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.rows = Counter("kaizen_predicted_rows", "Rows predicted", registry=self.registry)
        self.in_flight = Gauge("kaizen_requests_in_flight", "Requests being served", registry=self.registry,
                               multiprocess_mode="livesum")
        self.ready = Gauge("kaizen_model_ready", "1 once the model is loaded and warmed (in every worker)",
                           registry=self.registry, multiprocess_mode="livemin")
        self.ready.set(0)
        self.info = Gauge(
            "kaizen_model_info", "The model being served", ["name", "version", "artifact_sha256", "framework"],
            registry=self.registry, multiprocess_mode="max",
        )
        self.capture_written = Counter("kaizen_capture_written", "Data-capture records written",
                                       registry=self.registry)
        self.capture_dropped = Counter(
            "kaizen_capture_dropped", "Sampled data-capture records dropped (queue_full, write_error, error)",
            ["reason"], registry=self.registry,
        )
        self.drift_dropped = Counter(
            "kaizen_drift_dropped_rows", "Rows left out of the drift statistics because their buffer was full "
            "(the drift thread starved of CPU)", registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram, Counter | None]] = {}

    def model_loaded(self, manifest: Manifest, drift: DriftMonitor) -> None:
        self.info.labels(manifest.name, manifest.version, manifest.artifact_sha256, manifest.framework).set(1)
        self.ready.set(1)
        if drift.enabled:
            self.exposed.register(DriftCollector(drift))
            drift.on_drop = self.drift_dropped.inc

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request (label children cached: this is the hot path)."""
        key = (route, status)
        children = self._children.get(key)
        if children is None:
            error = self.errors.labels(route, str(status)) if status >= 400 else None
            children = (self.requests.labels(route, str(status)), self.latency.labels(route), error)
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()

    def count_capture(self, what: str, n: int) -> None:
        """Data capture's counter callback: `written`, or the reason a sample was dropped."""
        if what == "written":
            self.capture_written.inc(n)
        else:
            self.capture_dropped.labels(what).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.exposed)
