"""The serving contract: what the runtime answers on and reads, which every stack configures and watches.

One home for the facts that the runtime (`model_packages.serving`) and the infrastructure (`infra/`)
must agree on: the port, the routes the clouds probe, the environment variable names the stacks set,
the drift log line the clouds' log-based alarms parse, and the metric names Prometheus alarms on.
Pure constants and one helper: importing it loads nothing else (the stacks import it under Pulumi).
"""

from __future__ import annotations

# Where the image listens unless the platform says otherwise ($PORT, $AIP_HTTP_PORT, $KAIZEN_PORT).
PORT = 8080
DEFAULT_MODEL_DIR = "/opt/kaizen/model"
SAGEMAKER_MODEL_DIR = "/opt/ml/model"  # SageMaker mounts model data here

# Routes the image answers on every target.
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
PREDICT_PATH = "/predict"
PING_PATH = "/ping"  # SageMaker's health check
INVOCATIONS_PATH = "/invocations"  # SageMaker's scoring route
METRICS_PATH = "/metrics"

# Environment the stacks set and the runtime reads (`serving/settings.py` parses each).
ENV_HOST = "KAIZEN_HOST"
ENV_PORT = "KAIZEN_PORT"
ENV_MODEL_DIR = "KAIZEN_MODEL_DIR"
ENV_WORKERS = "KAIZEN_WORKERS"
ENV_KEEPALIVE_TIMEOUT = "KAIZEN_KEEPALIVE_TIMEOUT"
ENV_SERVE_WITH = "KAIZEN_SERVE_WITH"
ENV_LIVENESS_ROUTE = "KAIZEN_LIVENESS_ROUTE"  # Azure ML probes routes the deployment names
ENV_READINESS_ROUTE = "KAIZEN_READINESS_ROUTE"
ENV_SCORING_ROUTE = "KAIZEN_SCORING_ROUTE"
ENV_DRIFT = "KAIZEN_DRIFT"
ENV_DRIFT_FALSE_ALARM_DAYS = "KAIZEN_DRIFT_FALSE_ALARM_DAYS"
ENV_DRIFT_WINDOW_SECONDS = "KAIZEN_DRIFT_WINDOW_SECONDS"
ENV_DRIFT_WINDOW_ROWS = "KAIZEN_DRIFT_WINDOW_ROWS"
ENV_DRIFT_MIN_ROWS = "KAIZEN_DRIFT_MIN_ROWS"
ENV_CAPTURE_RATE = "KAIZEN_CAPTURE_RATE"
ENV_CAPTURE_DIR = "KAIZEN_CAPTURE_DIR"
ENV_CAPTURE_FORMAT = "KAIZEN_CAPTURE_FORMAT"
ENV_CAPTURE_MAX_FILE_BYTES = "KAIZEN_CAPTURE_MAX_FILE_BYTES"
ENV_CAPTURE_MAX_TOTAL_BYTES = "KAIZEN_CAPTURE_MAX_TOTAL_BYTES"

# The line the runtime logs when a drift window closes: `{"event": "drift", "drift_alarm": 0|1, ...}`.
# AWS metric filters, GCP log-based metrics and Azure's KQL alert read these two names.
DRIFT_EVENT = "drift"
DRIFT_ALARM_FIELD = "drift_alarm"
DRIFT_STATISTIC_FIELD = "drift_statistic"

# Prometheus metric names the local stack's rules and the dashboards use.
METRIC_DRIFT_ALARM = "kaizen_drift_alarm"
METRIC_REQUESTS = "kaizen_requests_total"
METRIC_LATENCY = "kaizen_request_duration_seconds"


def routes_env(live: str = LIVE_PATH, ready: str = READY_PATH, scoring: str = PREDICT_PATH) -> dict[str, str]:
    """The environment that tells the runtime which routes a platform probes and scores on."""
    return {ENV_LIVENESS_ROUTE: live, ENV_READINESS_ROUTE: ready, ENV_SCORING_ROUTE: scoring}
