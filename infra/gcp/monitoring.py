"""Cloud Monitoring for one Cloud Run service: log bucket with explicit retention, drift
log-based metric, alert policies (p99 latency, 5xx, saturation/throttling, drift) to
notification channels, one dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random
import pulumiverse_time as time

DRIFT_FILTER = 'jsonPayload.event="drift"'
# The runtime's calibrated verdict per closed window: 1 when the window failed the test.
DRIFT_ALARM_FILTER = f"{DRIFT_FILTER} AND jsonPayload.drift_alarm=1"
# A new log-based metric can take "up to 10 minutes" before alert policies may reference it
# (hashicorp/terraform-provider-google#11102); depends_on alone cannot wait for that.
METRIC_PROPAGATION = "300s"


def drift_metric_name(service: str) -> str:
    return f"Kaizen/{service}/DriftAlarms"


@dataclass(frozen=True)
class ServiceMonitoringArgs:
    project: str
    service_name: str
    retention_days: int
    latency_p99_ms: float
    errors_5xx_per_5min: int
    saturation_percent: float
    drift_false_alarm_days: float
    channel_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)


class ServiceMonitoring(pulumi.ComponentResource):
    channels: pulumi.Output[list[str]]
    alert_policy_names: dict[str, pulumi.Output[str]]
    log_bucket: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:ServiceMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        svc = args.service_name
        resource = f'resource.type="cloud_run_revision" AND resource.labels.service_name="{svc}"'

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
        metric_name = drift_metric_name(svc)
        drift_metric = gcp.logging.Metric(
            f"{name}-drift-metric",
            gcp.logging.MetricArgs(
                project=args.project,
                name=metric_name,
                description="Kaizen runtime drift windows that failed the calibrated test (drift_alarm=1)",
                filter=f"{resource} AND {DRIFT_ALARM_FILTER}",
                metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                    metric_kind="DELTA", value_type="INT64", unit="1", display_name="DriftAlarms"
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

        def policy(
            key: str,
            title: str,
            conditions: list[gcp.monitoring.AlertPolicyConditionArgs],
            depends: list[pulumi.Resource] | None = None,
        ) -> gcp.monitoring.AlertPolicy:
            return gcp.monitoring.AlertPolicy(
                f"{name}-{key}",
                gcp.monitoring.AlertPolicyArgs(
                    project=args.project,
                    display_name=f"{svc}: {title}",
                    combiner="OR",
                    conditions=conditions,
                    notification_channels=channels,
                    severity="ERROR",
                    documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                        content=f"Kaizen model service {svc}: {title}.", mime_type="text/markdown"
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends or []),
            )

        def threshold(
            title: str,
            flt: str,
            aligner: str,
            value: float,
            period: str = "60s",
            duration: str = "300s",
            reducer: str | None = None,
        ) -> gcp.monitoring.AlertPolicyConditionArgs:
            return gcp.monitoring.AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=f"{resource} AND {flt}",
                    comparison="COMPARISON_GT",
                    threshold_value=value,
                    duration=duration,
                    aggregations=[
                        gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                            alignment_period=period, per_series_aligner=aligner, cross_series_reducer=reducer
                        )
                    ],
                    trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
                ),
            )

        latency = policy(
            "latency-p99",
            f"p99 latency above {args.latency_p99_ms} ms",
            [
                threshold(
                    "p99 request latency",
                    'metric.type="run.googleapis.com/request_latencies"',
                    "ALIGN_PERCENTILE_99",
                    args.latency_p99_ms,
                ),
            ],
        )
        errors = policy(
            "errors-5xx",
            f"more than {args.errors_5xx_per_5min} 5xx in 5 minutes",
            [
                threshold(
                    "5xx responses",
                    'metric.type="run.googleapis.com/request_count" AND metric.labels.response_code_class="5xx"',
                    "ALIGN_SUM",
                    float(args.errors_5xx_per_5min),
                    period="300s",
                    duration="0s",
                    reducer="REDUCE_SUM",
                ),
            ],
        )
        saturation = policy(
            "saturation",
            "saturation or throttling",
            [
                threshold(
                    "CPU utilization p99",
                    'metric.type="run.googleapis.com/container/cpu/utilizations"',
                    "ALIGN_PERCENTILE_99",
                    args.saturation_percent / 100.0,
                    duration="600s",
                ),
                threshold(
                    "429 responses (no instance available)",
                    'metric.type="run.googleapis.com/request_count" AND metric.labels.response_code="429"',
                    "ALIGN_SUM",
                    0.0,
                    period="300s",
                    duration="0s",
                    reducer="REDUCE_SUM",
                ),
            ],
        )
        drift = policy(
            "drift",
            f"calibrated drift alarm (false alarms about once per {args.drift_false_alarm_days:g} days)",
            [
                threshold(
                    "drift windows with drift_alarm=1",
                    f'metric.type="logging.googleapis.com/user/{metric_name}"',
                    "ALIGN_SUM",
                    0.0,
                    period="300s",
                    duration="0s",
                ),
            ],
            depends=[drift_metric, metric_visible],
        )

        def chart(title: str, flt: str, aligner: str) -> dict:
            return {
                "title": title,
                "xyChart": {
                    "dataSets": [
                        {
                            "timeSeriesQuery": {
                                "timeSeriesFilter": {
                                    "filter": f"{resource} AND {flt}",
                                    "aggregation": {"alignmentPeriod": "60s", "perSeriesAligner": aligner},
                                }
                            },
                            "plotType": "LINE",
                        }
                    ]
                },
            }

        tiles = [
            chart("p99 latency (ms)", 'metric.type="run.googleapis.com/request_latencies"', "ALIGN_PERCENTILE_99"),
            chart("Requests by class", 'metric.type="run.googleapis.com/request_count"', "ALIGN_RATE"),
            chart(
                "CPU utilization p99",
                'metric.type="run.googleapis.com/container/cpu/utilizations"',
                "ALIGN_PERCENTILE_99",
            ),
            chart("Drift alarms (calibrated)", f'metric.type="logging.googleapis.com/user/{metric_name}"', "ALIGN_SUM"),
        ]
        dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            gcp.monitoring.DashboardArgs(
                project=args.project,
                dashboard_json=json.dumps(
                    {
                        "displayName": f"Kaizen {svc}",
                        "mosaicLayout": {
                            "columns": 12,
                            "tiles": [
                                {"xPos": (i % 2) * 6, "yPos": (i // 2) * 4, "width": 6, "height": 4, "widget": t}
                                for i, t in enumerate(tiles)
                            ],
                        },
                    }
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[drift_metric]),
        )

        self.channels = pulumi.Output.all(*channels).apply(list)
        self.alert_policy_names = {
            "latency": latency.name,
            "errors": errors.name,
            "saturation": saturation.name,
            "drift": drift.name,
        }
        self.log_bucket = bucket.name
        self.register_outputs(
            {"channels": self.channels, "alert_policy_names": self.alert_policy_names, "dashboard": dashboard.id}
        )
