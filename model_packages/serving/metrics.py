"""Prometheus metrics of the runtime, on a registry of its own.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
the supervisor) keeps each worker's values in files and every scrape sums them; drift is summed by
`FeatureStats` itself.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from model_packages.manifest import Manifest
from model_packages.serving.drift import FeatureStats

disable_created_metrics()

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class DriftCollector(Collector):
    """Computes drift gauges at scrape time, keeping the request path cheap."""

    def __init__(self, stats: FeatureStats) -> None:
        self.stats = stats

    def collect(self):  # type: ignore[override]
        scores = self.stats.scores()
        per_feature = GaugeMetricFamily(
            "kaizen_feature_drift_psi",
            "Population Stability Index of a feature over the live window against the training baseline",
            labels=["feature"],
        )
        for name, value in scores.items():
            per_feature.add_metric([name], value)
        yield per_feature
        yield GaugeMetricFamily(
            "kaizen_drift_score",
            "Largest feature PSI over the live window (-1 until enough rows have been seen)",
            value=max(scores.values()) if scores else -1.0,
        )
        unseen = GaugeMetricFamily(
            "kaizen_feature_unseen_fraction",
            "Share of a categorical feature's values in the live window that the training data never had",
            labels=["feature"],
        )
        for name, value in self.stats.unseen_fractions().items():
            unseen.add_metric([name], value)
        yield unseen
        yield GaugeMetricFamily(
            "kaizen_drift_window_rows", "Rows in the live drift window", value=self.stats.window_rows_seen
        )


class RuntimeMetrics:
    """Request counters, latency histogram, in-flight gauge, model info and drift gauges."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposed = self.registry
        if multiprocess_dir is not None:
            self.exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self.exposed, str(multiprocess_dir))
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
        self._children: dict[tuple[str, int], tuple[Counter, Histogram, Counter | None]] = {}

    def model_loaded(self, manifest: Manifest, stats: FeatureStats) -> None:
        self.info.labels(manifest.name, manifest.version, manifest.artifact_sha256, manifest.framework).set(1)
        self.ready.set(1)
        self.exposed.register(DriftCollector(stats))

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
