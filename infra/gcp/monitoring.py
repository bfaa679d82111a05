"""Cloud Monitoring for one Cloud Run service: log bucket with explicit retention, drift
log-based metric, alert policies (p99 latency, 5xx, saturation/throttling, drift) to
notification channels, one dashboard.

The policies are data: :func:`alarm_specs` is the table (one :class:`PolicySpec` per policy, each
with its :class:`ConditionSpec` thresholds), and :func:`_policy` turns a spec into an
`AlertPolicy` with what every policy shares (channels, severity, documentation, comparison). The
dashboard body is the pure :func:`dashboard_body`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random
import pulumiverse_time as time

from model_packages.serving import contract as c

from ..common.config import Alerts
from ..common.dashboards import grid
from ..drift_config import DriftSettings

DRIFT_FILTER = f'jsonPayload.event="{c.DRIFT_EVENT}"'
# The runtime's calibrated verdict per closed window: 1 when the window failed the test.
DRIFT_ALARM_FILTER = f"{DRIFT_FILTER} AND jsonPayload.{c.DRIFT_ALARM_FIELD}=1"
DRIFT_METRIC_SUFFIX = "DriftAlarms"
# A new log-based metric can take "up to 10 minutes" before alert policies may reference it
# (hashicorp/terraform-provider-google#11102); depends_on alone cannot wait for that.
METRIC_PROPAGATION = "300s"
LATENCY = 'metric.type="run.googleapis.com/request_latencies"'
REQUESTS = 'metric.type="run.googleapis.com/request_count"'
ERRORS_5XX = f'{REQUESTS} AND metric.labels.response_code_class="5xx"'
THROTTLED = f'{REQUESTS} AND metric.labels.response_code="429"'
CPU = 'metric.type="run.googleapis.com/container/cpu/utilizations"'
# Every Cloud Run service has policies on these (infra/policy/guardrails.py checks it).
REQUIRED_METRICS = ("request_latencies", 'response_code_class="5xx"', DRIFT_METRIC_SUFFIX)


def drift_metric_name(service: str) -> str:
    return f"Kaizen/{service}/{DRIFT_METRIC_SUFFIX}"


def service_filter(service: str) -> str:
    return f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}"'


@dataclass(frozen=True)
class ConditionSpec:
    """One threshold condition: `metric` is the filter's metric part (the service's is prepended)."""

    title: str
    metric: str
    aligner: str
    threshold: float
    period: str = "60s"
    duration: str = "300s"
    reducer: str | None = None


@dataclass(frozen=True)
class PolicySpec:
    """One alert policy: `key` names its resource (`<component>-<key>`); its conditions are ORed."""

    output: str  # key in EndpointMonitoring.alarm_names / alarm_ids
    key: str
    title: str
    conditions: tuple[ConditionSpec, ...]
    drift: bool = False  # waits for the log-based metric; notifies the drift channels too


def alarm_specs(service: str, alerts: Alerts, drift: DriftSettings) -> list[PolicySpec]:
    """The service's policies: p99 latency, 5xx, saturation or throttling, drift."""
    count = dict(period="300s", duration="0s", reducer="REDUCE_SUM")  # a sum over 5 minutes, at once
    return [
        PolicySpec("latency", "latency-p99", f"p99 latency above {alerts.latency_p99_ms} ms", (
            ConditionSpec("p99 request latency", LATENCY, "ALIGN_PERCENTILE_99", alerts.latency_p99_ms),)),
        PolicySpec("errors", "errors-5xx", f"more than {alerts.errors_5xx_per_5min} 5xx in 5 minutes", (
            ConditionSpec("5xx responses", ERRORS_5XX, "ALIGN_SUM", float(alerts.errors_5xx_per_5min), **count),)),
        PolicySpec("saturation", "saturation", "saturation or throttling", (
            ConditionSpec("CPU utilization p99", CPU, "ALIGN_PERCENTILE_99", alerts.saturation_percent / 100.0,
                          duration="600s"),
            ConditionSpec("429 responses (no instance available)", THROTTLED, "ALIGN_SUM", 0.0, **count))),
        PolicySpec("drift", "drift",
                   f"calibrated drift alarm (false alarms about once per {drift.false_alarm_days:g} days)", (
            ConditionSpec(f"drift windows with {c.DRIFT_ALARM_FIELD}=1",
                          f'metric.type="logging.googleapis.com/user/{drift_metric_name(service)}"', "ALIGN_SUM", 0.0,
                          period="300s", duration="0s"),), drift=True),
    ]


def dashboard_body(service: str) -> dict:
    """The Cloud Monitoring dashboard: latency, requests by class, CPU, drift alarms."""
    charts = [
        ("p99 latency (ms)", LATENCY, "ALIGN_PERCENTILE_99"),
        ("Requests by class", REQUESTS, "ALIGN_RATE"),
        ("CPU utilization p99", CPU, "ALIGN_PERCENTILE_99"),
        ("Drift alarms (calibrated)", f'metric.type="logging.googleapis.com/user/{drift_metric_name(service)}"',
         "ALIGN_SUM"),
    ]
    tiles = [
        {"xPos": x, "yPos": y, "width": 6, "height": 4, "widget": {
            "title": title,
            "xyChart": {"dataSets": [{
                "timeSeriesQuery": {"timeSeriesFilter": {
                    "filter": f"{service_filter(service)} AND {flt}",
                    "aggregation": {"alignmentPeriod": "60s", "perSeriesAligner": aligner}}},
                "plotType": "LINE"}]},
        }}
        for x, y, (title, flt, aligner) in grid(charts, 6, 4)
    ]
    return {"displayName": f"Kaizen {service}", "mosaicLayout": {"columns": 12, "tiles": tiles}}


@dataclass(frozen=True)
class EndpointMonitoringArgs:
    project: str
    service_name: str
    retention_days: int
    alerts: Alerts
    drift: DriftSettings
    channel_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    drift_channel_ids: list[pulumi.Input[str]] = field(default_factory=list)  # the drift alert only (retraining)


class EndpointMonitoring(pulumi.ComponentResource):
    channels: pulumi.Output[list[str]]
    alarm_names: dict[str, pulumi.Output[str]]  # the policies' display names
    alarm_ids: dict[str, pulumi.Output[str]]  # the policies' resource names (projects/.../alertPolicies/...)
    dashboard: pulumi.Output[str]
    log_bucket: pulumi.Output[str]

    def __init__(self, name: str, args: EndpointMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        # Was kaizen:gcp:ServiceMonitoring: the alias keeps the deployed policies (and every child).
        aliased = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="kaizen:gcp:ServiceMonitoring")])
        super().__init__("kaizen:gcp:EndpointMonitoring", name, None, pulumi.ResourceOptions.merge(opts, aliased))
        child = pulumi.ResourceOptions(parent=self)
        svc = args.service_name
        resource = service_filter(svc)

        # A deleted log bucket keeps its ID for 7 days (DELETE_REQUESTED): a random suffix, kept
        # in state, lets a destroyed stack be re-created at once.
        bucket_suffix = random.RandomId(f"{name}-log-bucket-suffix", random.RandomIdArgs(byte_length=3), opts=child)
        bucket = gcp.logging.ProjectBucketConfig(
            f"{name}-log-bucket",
            gcp.logging.ProjectBucketConfigArgs(
                project=args.project,
                location="global",
                bucket_id=bucket_suffix.hex.apply(lambda h: f"kaizen-{svc}"[:93] + f"-{h}"),
                retention_days=args.retention_days,
                description=f"Logs of Cloud Run service {svc}",
            ),
            opts=child,
        )
        gcp.logging.ProjectSink(
            f"{name}-log-sink",
            gcp.logging.ProjectSinkArgs(
                project=args.project,
                name=f"kaizen-{svc}"[:100],
                destination=bucket.bucket_id.apply(
                    lambda b: f"logging.googleapis.com/projects/{args.project}/locations/global/buckets/{b}"
                ),
                filter=resource,
                unique_writer_identity=True,
            ),
            opts=child,
        )
        drift_metric = gcp.logging.Metric(
            f"{name}-drift-metric",
            gcp.logging.MetricArgs(
                project=args.project,
                name=drift_metric_name(svc),
                description=f"Kaizen runtime drift windows that failed the calibrated test ({c.DRIFT_ALARM_FIELD}=1)",
                filter=f"{resource} AND {DRIFT_ALARM_FILTER}",
                metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                    metric_kind="DELTA", value_type="INT64", unit="1", display_name=DRIFT_METRIC_SUFFIX
                ),
            ),
            opts=child,
        )
        metric_visible = time.Sleep(
            f"{name}-drift-metric-propagation",
            time.SleepArgs(create_duration=METRIC_PROPAGATION, triggers={"metric": drift_metric.id}),
            opts=child,
        )

        channels: list[pulumi.Input[str]] = list(args.channel_ids)
        for i, email in enumerate(args.emails):
            channel = gcp.monitoring.NotificationChannel(
                f"{name}-email-{i}",
                gcp.monitoring.NotificationChannelArgs(
                    project=args.project,
                    type="email",
                    display_name=f"Kaizen {svc} {email}",
                    labels={"email_address": email},
                ),
                opts=child,
            )
            channels.append(channel.name)

        policies = {}
        for spec in alarm_specs(svc, args.alerts, args.drift):
            notify = [*channels, *args.drift_channel_ids] if spec.drift else channels
            after = [drift_metric, metric_visible] if spec.drift else []
            policies[spec.output] = _policy(
                name, args.project, svc, spec, notify, pulumi.ResourceOptions(parent=self, depends_on=after)
            )
        dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            gcp.monitoring.DashboardArgs(project=args.project, dashboard_json=json.dumps(dashboard_body(svc))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[drift_metric]),
        )

        self.channels = pulumi.Output.all(*channels).apply(list)
        self.alarm_names = {key: policy.display_name for key, policy in policies.items()}
        self.alarm_ids = {key: policy.name for key, policy in policies.items()}
        self.dashboard = dashboard.id
        self.log_bucket = bucket.name
        self.register_outputs(
            {"channels": self.channels, "alarm_ids": self.alarm_ids, "dashboard": self.dashboard}
        )


def _policy(
    component: str,
    project: str,
    service: str,
    spec: PolicySpec,
    channels: list[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> gcp.monitoring.AlertPolicy:
    """One policy of the table, with what they all share: any condition fires it, at ERROR."""
    return gcp.monitoring.AlertPolicy(
        f"{component}-{spec.key}",
        gcp.monitoring.AlertPolicyArgs(
            project=project,
            display_name=f"{service}: {spec.title}",
            combiner="OR",
            conditions=[_condition(service, cond) for cond in spec.conditions],
            notification_channels=channels,
            severity="ERROR",
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=f"Kaizen model service {service}: {spec.title}.", mime_type="text/markdown"
            ),
        ),
        opts=opts,
    )


def _condition(service: str, spec: ConditionSpec) -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=spec.title,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=f"{service_filter(service)} AND {spec.metric}",
            comparison="COMPARISON_GT",
            threshold_value=spec.threshold,
            duration=spec.duration,
            aggregations=[
                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period=spec.period, per_series_aligner=spec.aligner, cross_series_reducer=spec.reducer
                )
            ],
            trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
        ),
    )
