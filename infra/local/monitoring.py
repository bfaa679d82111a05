"""Prometheus configuration and alert rules of the local stack (pure functions, no I/O)."""

from __future__ import annotations

import json

from model_packages.serving import contract as c

from ..common.local_config import AlertingSettings, LocalAlerts

CONFIG_PATH = "/etc/kaizen/prometheus.yml"
RULES_PATH = "/etc/kaizen/rules.yml"
ALERTMANAGER_CONFIG_PATH = "/etc/kaizen/alertmanager.yml"
ALERTMANAGER_TEMPLATES = "/usr/share/prometheus/alertmanager"  # Debian's default.tmpl, email.tmpl
WEBHOOK_RECEIVER = "kaizen-webhook"


def alert_rules(alerts: LocalAlerts, *, model: str, drift_days: float = 30.0) -> str:
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
                            f"(rate({c.METRIC_LATENCY}_bucket[{w}]))) "
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
                            f'sum(increase({c.METRIC_REQUESTS}{{status=~"5.."}}[{w}])) > {alerts.errors_5xx_per_5min}'
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
                        "expr": f"max({c.METRIC_DRIFT_ALARM}) >= 1",
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


def prometheus_config(*, target: str, scrape_interval: str, model: str, alertmanager: str | None = None) -> str:
    """Scrape the endpoint, evaluate the rules; with `alertmanager` (host:port), send alerts there."""
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [RULES_PATH],
        "scrape_configs": [
            {
                "job_name": "kaizen-endpoint",
                "metrics_path": c.METRICS_PATH,
                "static_configs": [{"targets": [target], "labels": {"model": model}}],
            }
        ],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return json.dumps(config, indent=2) + "\n"


def alertmanager_config(alerting: AlertingSettings) -> str:
    """Route the named alerts to the webhook (bearer token), everything else nowhere; checked by
    `amtool check-config` before Alertmanager starts. Holds the token: a Pulumi secret."""
    names = "|".join(alerting.alerts)
    config = {
        "route": {
            "receiver": "discard",
            "group_by": ["alertname", "model"],
            "group_wait": alerting.group_wait,
            "group_interval": alerting.group_interval,
            "repeat_interval": alerting.repeat_interval,
            "routes": [{"receiver": WEBHOOK_RECEIVER, "matchers": [f'alertname=~"{names}"']}],
        },
        "receivers": [
            {"name": "discard"},
            {
                "name": WEBHOOK_RECEIVER,
                "webhook_configs": [
                    {
                        "url": alerting.webhook_url,
                        "send_resolved": False,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": alerting.webhook_token}},
                    }
                ],
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"
