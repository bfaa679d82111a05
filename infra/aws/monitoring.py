"""CloudWatch: endpoint log group with retention, drift metric from the runtime's log line,
alarms (p99 latency, 5xx, saturation, drift) to an SNS topic, one dashboard.

The alarms are data: :func:`alarm_specs` is the table (one :class:`AlarmSpec` per alarm), and
:func:`_alarm` turns a spec into a `MetricAlarm` with what every alarm shares (actions, comparison,
missing data). The dashboard body is the pure :func:`dashboard_body`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from model_packages.serving import contract as c

from ..common.config import Alerts
from ..common.dashboards import grid
from ..drift_config import DriftSettings
from .endpoint import VARIANT

DRIFT_METRIC = "DriftAlarm"  # 0/1 per closed window: the runtime's calibrated verdict
DRIFT_STATISTIC_METRIC = "DriftStatistic"  # the calibrated score (alarm at >= 1), for the dashboard
DRIFT_NAMESPACE_PREFIX = "Kaizen"
DRIFT_PATTERN = f'{{ $.event = "{c.DRIFT_EVENT}" }}'
# Metric filters: the CloudWatch metric each field of the runtime's drift line becomes.
DRIFT_FILTERS = (("drift-filter", DRIFT_METRIC, c.DRIFT_ALARM_FIELD),
                 ("drift-statistic-filter", DRIFT_STATISTIC_METRIC, c.DRIFT_STATISTIC_FIELD))
SAGEMAKER = "AWS/SageMaker"
ENDPOINT_METRICS = "/aws/sagemaker/Endpoints"  # instance metrics (CPU) of an endpoint
LATENCY_METRIC, ERRORS_METRIC = "ModelLatency", "Invocation5XXErrors"
SERVERLESS_SATURATION_METRIC, CPU_METRIC = "ServerlessConcurrentExecutionsUtilization", "CPUUtilization"
# Every SageMaker endpoint alarms on these (infra/policy/guardrails.py checks it).
REQUIRED_METRICS = (LATENCY_METRIC, ERRORS_METRIC, DRIFT_METRIC)


def drift_period(window_seconds: float) -> int:
    """The drift alarm's period: a multiple of 60 s holding at least one window (at most a day)."""
    return int(min(86_400, max(60, -(-int(window_seconds) // 60) * 60)))


def drift_namespace(endpoint_name: str) -> str:
    # A metric filter cannot add constant dimensions, so the endpoint goes in the namespace.
    return f"{DRIFT_NAMESPACE_PREFIX}/{endpoint_name}"


@dataclass(frozen=True)
class AlarmSpec:
    """One CloudWatch alarm: `key` names it (`<endpoint>-<key>`) and its resource (`<component>-<key>`)."""

    output: str  # key in EndpointMonitoring.alarm_names / alarm_ids
    key: str
    namespace: str
    metric: str
    statistic: str  # Sum | Average | Maximum, or a percentile (p99: an extended statistic)
    period: int
    evaluation_periods: int
    threshold: float
    description: str
    datapoints: int | None = None  # datapoints_to_alarm (default: all evaluation periods)
    comparison: str = "GreaterThanThreshold"
    endpoint_dimensions: bool = True  # False: the metric's namespace already names the endpoint


def alarm_specs(endpoint: str, alerts: Alerts, drift: DriftSettings, serverless: bool, vcpus: int) -> list[AlarmSpec]:
    """The endpoint's alarms: p99 latency, 5xx, saturation (serverless concurrency or CPU), drift."""
    if serverless:
        saturation = AlarmSpec("saturation", "saturation", SAGEMAKER, SERVERLESS_SATURATION_METRIC, "Maximum", 60, 5,
                               alerts.saturation_percent / 100.0,
                               "serverless concurrency close to its maximum (throttling)")
    else:
        # CPUUtilization sums the cores: 0-400 % on 4 vCPUs (rules.METRICS_DOC).
        saturation = AlarmSpec("saturation", "saturation", ENDPOINT_METRICS, CPU_METRIC, "Average", 60, 10,
                               alerts.saturation_percent * vcpus,
                               f"CPU utilization above {alerts.saturation_percent}% of {vcpus} vCPUs", datapoints=8)
    return [
        AlarmSpec("latency", "latency-p99", SAGEMAKER, LATENCY_METRIC, "p99", 60, 5,
                  alerts.latency_p99_ms * 1000.0,  # ModelLatency is in microseconds
                  f"p99 model latency above {alerts.latency_p99_ms} ms", datapoints=3),
        AlarmSpec("errors", "errors-5xx", SAGEMAKER, ERRORS_METRIC, "Sum", 300, 1, float(alerts.errors_5xx_per_5min),
                  f"more than {alerts.errors_5xx_per_5min} 5xx responses in 5 minutes"),
        saturation,
        # One verdict line per window: each period holds the last window's verdict.
        AlarmSpec("drift", "drift", drift_namespace(endpoint), DRIFT_METRIC, "Maximum",
                  drift_period(drift.window_seconds), 1, 1,
                  f"the runtime's calibrated drift test failed on a closed window ({c.DRIFT_ALARM_FIELD}=1); "
                  f"false alarms about once per {drift.false_alarm_days:g} days",
                  comparison="GreaterThanOrEqualToThreshold", endpoint_dimensions=False),
    ]


def dashboard_body(endpoint: str, region: str, serverless: bool) -> dict:
    """The CloudWatch dashboard: latency, invocations and 5xx, saturation, drift."""
    dims = ["EndpointName", endpoint, "VariantName", VARIANT]
    saturation = ([SAGEMAKER, SERVERLESS_SATURATION_METRIC, *dims] if serverless
                  else [ENDPOINT_METRICS, CPU_METRIC, *dims])
    drift = drift_namespace(endpoint)
    widgets = [
        ("p99 latency (us)", [[SAGEMAKER, LATENCY_METRIC, *dims, {"stat": "p99"}]]),
        ("Invocations / 5xx", [[SAGEMAKER, "Invocations", *dims, {"stat": "Sum"}],
                               [SAGEMAKER, ERRORS_METRIC, *dims, {"stat": "Sum"}]]),
        ("Saturation", [saturation]),
        ("Drift: calibrated score (alarm at 1) and verdict",
         [[drift, DRIFT_STATISTIC_METRIC, {"stat": "Maximum"}], [drift, DRIFT_METRIC, {"stat": "Maximum"}]]),
    ]
    return {"widgets": [
        {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
         "properties": {"title": title, "metrics": metrics, "region": region, "period": 60, "view": "timeSeries"}}
        for x, y, (title, metrics) in grid(widgets, 12, 6)
    ]}


@dataclass(frozen=True)
class EndpointMonitoringArgs:
    endpoint_name: str
    region: str
    retention_days: int
    alerts: Alerts
    drift: DriftSettings
    serverless: bool
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    vcpus: int = 1  # CPUUtilization is a sum over cores (0-100 % x vCPUs)
    topic_arn: str | None = None
    emails: list[str] = field(default_factory=list)


class EndpointMonitoring(pulumi.ComponentResource):
    log_group_name: pulumi.Output[str]
    log_group_arn: pulumi.Output[str]
    topic_arn: pulumi.Output[str]
    alarm_names: dict[str, pulumi.Output[str]]
    alarm_ids: dict[str, pulumi.Output[str]]  # the alarms' ARNs
    dashboard: pulumi.Output[str]  # the dashboard's name

    def __init__(self, name: str, args: EndpointMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:aws:EndpointMonitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ep = args.endpoint_name

        # SageMaker writes to this group; creating it first makes retention explicit.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            aws.cloudwatch.LogGroupArgs(name=f"/aws/sagemaker/Endpoints/{ep}", retention_in_days=args.retention_days),
            opts=child,
        )
        for suffix, metric, field_name in DRIFT_FILTERS:
            aws.cloudwatch.LogMetricFilter(
                f"{name}-{suffix}",
                aws.cloudwatch.LogMetricFilterArgs(
                    log_group_name=log_group.name,
                    pattern=DRIFT_PATTERN,
                    metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                        name=metric, namespace=drift_namespace(ep), value=f"$.{field_name}"
                    ),
                ),
                opts=child,
            )
        topic_arn = self._topic(name, args)
        for i, email in enumerate(args.emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{i}",
                aws.sns.TopicSubscriptionArgs(topic=topic_arn, protocol="email", endpoint=email),
                opts=child,
            )
        specs = alarm_specs(ep, args.alerts, args.drift, args.serverless, args.vcpus)
        alarms = {spec.output: _alarm(name, ep, spec, [topic_arn], child) for spec in specs}
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            aws.cloudwatch.DashboardArgs(
                dashboard_name=ep, dashboard_body=json.dumps(dashboard_body(ep, args.region, args.serverless))
            ),
            opts=child,
        )

        self.log_group_name = log_group.name
        self.log_group_arn = log_group.arn
        self.topic_arn = topic_arn
        self.alarm_names = {key: alarm.name for key, alarm in alarms.items()}
        self.alarm_ids = {key: alarm.arn for key, alarm in alarms.items()}
        self.dashboard = dashboard.dashboard_name
        self.register_outputs(
            {
                "log_group_name": self.log_group_name,
                "topic_arn": self.topic_arn,
                "alarm_names": self.alarm_names,
                "dashboard": self.dashboard,
            }
        )

    def _topic(self, name: str, args: EndpointMonitoringArgs) -> pulumi.Output[str]:
        if args.topic_arn is not None:
            return pulumi.Output.from_input(args.topic_arn)
        child = pulumi.ResourceOptions(parent=self)
        # CloudWatch cannot publish to a topic under the AWS-managed SNS key; a customer key
        # whose policy lets CloudWatch use it works (rules.SNS_CW_DOC).
        key = aws.kms.Key(
            f"{name}-alarms-key",
            aws.kms.KeyArgs(
                description=f"Kaizen alarm topic {args.endpoint_name}",
                enable_key_rotation=True,
                deletion_window_in_days=7,
                policy=pulumi.Output.all(args.partition, args.account_id).apply(
                    lambda v: json.dumps(alarm_key_policy(v[0], v[1]))
                ),
            ),
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-alarms",
            aws.sns.TopicArgs(display_name=f"Kaizen {args.endpoint_name}", kms_master_key_id=key.arn),
            opts=child,
        )
        return topic.arn


def _alarm(
    component: str, endpoint: str, spec: AlarmSpec, actions: list[pulumi.Input[str]], opts: pulumi.ResourceOptions
) -> aws.cloudwatch.MetricAlarm:
    """One alarm of the table, with what they all share: notify on ALARM and OK, missing data is fine."""
    extended = spec.statistic.startswith("p")
    return aws.cloudwatch.MetricAlarm(
        f"{component}-{spec.key}",
        aws.cloudwatch.MetricAlarmArgs(
            name=f"{endpoint}-{spec.key}",
            alarm_actions=actions,
            ok_actions=actions,
            alarm_description=spec.description,
            namespace=spec.namespace,
            metric_name=spec.metric,
            dimensions={"EndpointName": endpoint, "VariantName": VARIANT} if spec.endpoint_dimensions else None,
            statistic=None if extended else spec.statistic,
            extended_statistic=spec.statistic if extended else None,
            period=spec.period,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            treat_missing_data="notBreaching",
        ),
        opts=opts,
    )


def alarm_key_policy(partition: str, account_id: str) -> dict:
    """Key policy: the account administers the key; CloudWatch may encrypt alarm messages."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
            },
        ],
    }
