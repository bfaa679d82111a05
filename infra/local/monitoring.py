"""Prometheus configuration and alert rules of the local stack (pure functions, no I/O)."""

from __future__ import annotations

import json

from infra.local.settings import AlertSettings

CONFIG_PATH = "/etc/kaizen/prometheus.yml"
RULES_PATH = "/etc/kaizen/rules.yml"


def alert_rules(alerts: AlertSettings, *, model: str, drift_days: float = 30.0) -> str:
    """Alert rules for p99 latency, 5xx rate and drift (checked by `promtool check rules`);
    `drift_days` is the runtime's configured time between false drift alarms (for the summary)."""
    w = "5m"
    p99_seconds = alerts.latency_p99_ms / 1000.0
    labels = {"severity": "page", "model": model}
    groups = {
        "groups": [
            {
                "name": "kaizen-endpoint",
                "rules": [
                    {
                        "alert": "KaizenHighP99Latency",
                        "expr": (
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(kaizen_request_duration_seconds_bucket[{w}]))) "
                            f"> {p99_seconds:g}"
                        ),
                        "for": alerts.for_,
                        "labels": labels,
                        "annotations": {
                            "summary": f"p99 latency of {model} above {alerts.latency_p99_ms:g} ms over {w}",
                        },
                    },
                    {
                        "alert": "KaizenHighErrorRate",
                        "expr": (
                            f'sum(increase(kaizen_requests_total{{status=~"5.."}}[{w}])) > {alerts.errors_5xx_per_5min}'
                        ),
                        "for": alerts.for_,
                        "labels": labels,
                        "annotations": {
                            "summary": f"more than {alerts.errors_5xx_per_5min} 5xx answers of {model} in {w}",
                        },
                    },
                    {
                        "alert": "KaizenDrift",
                        # The runtime's calibrated verdict on its last closed window; no `for`:
                        # the window is the persistence, and its false-alarm rate is configured.
                        "expr": "max(kaizen_drift_alarm) >= 1",
                        "labels": labels,
                        "annotations": {
                            "summary": f"drift of {model}: the last window failed the calibrated test "
                                       f"(false alarms about once per {drift_days:g} days)",
                        },
                    },
                    {
                        "alert": "KaizenEndpointDown",
                        "expr": 'up{job="kaizen-endpoint"} == 0',
                        "for": "1m",
                        "labels": labels,
                        "annotations": {"summary": f"the endpoint of {model} is not scraped"},
                    },
                ],
            }
        ]
    }
    # JSON is valid YAML, and needs no YAML library here.
    return json.dumps(groups, indent=2) + "\n"


def prometheus_config(*, target: str, scrape_interval: str, model: str) -> str:
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [RULES_PATH],
        "scrape_configs": [
            {
                "job_name": "kaizen-endpoint",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target], "labels": {"model": model}}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"
