"""CloudWatch: endpoint log group with retention, drift metric from the runtime's log line,
alarms (p99 latency, 5xx, saturation, drift) to an SNS topic, one dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.aws.endpoint import VARIANT

DRIFT_METRIC = "DriftAlarm"  # 0/1 per closed window: the runtime's calibrated verdict
DRIFT_STATISTIC_METRIC = "DriftStatistic"  # the calibrated score (alarm at >= 1), for the dashboard
DRIFT_NAMESPACE_PREFIX = "Kaizen"
DRIFT_PATTERN = '{ $.event = "drift" }'


def drift_period(window_seconds: float) -> int:
    """The drift alarm's period: a multiple of 60 s holding at least one window (at most a day)."""
    return int(min(86_400, max(60, -(-int(window_seconds) // 60) * 60)))


def drift_namespace(endpoint_name: str) -> str:
    # A metric filter cannot add constant dimensions, so the endpoint goes in the namespace.
    return f"{DRIFT_NAMESPACE_PREFIX}/{endpoint_name}"


@dataclass(frozen=True)
class EndpointMonitoringArgs:
    endpoint_name: str
    region: str
    retention_days: int
    latency_p99_ms: float
    errors_5xx_per_5min: int
    saturation_percent: float
    drift_window_seconds: float
    drift_false_alarm_days: float
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
    alarm_arns: dict[str, pulumi.Output[str]]
    dashboard_name: pulumi.Output[str]

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
        for suffix, metric, field_name in (("drift-filter", DRIFT_METRIC, "drift_alarm"),
                                           ("drift-statistic-filter", DRIFT_STATISTIC_METRIC, "drift_statistic")):
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

        if args.topic_arn is not None:
            topic_arn: pulumi.Output[str] = pulumi.Output.from_input(args.topic_arn)
        else:
            # CloudWatch cannot publish to a topic under the AWS-managed SNS key; a customer key
            # whose policy lets CloudWatch use it works (rules.SNS_CW_DOC).
            key = aws.kms.Key(
                f"{name}-alarms-key",
                aws.kms.KeyArgs(
                    description=f"Kaizen alarm topic {ep}",
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
                aws.sns.TopicArgs(display_name=f"Kaizen {ep}", kms_master_key_id=key.arn),
                opts=child,
            )
            topic_arn = topic.arn
        for i, email in enumerate(args.emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{i}",
                aws.sns.TopicSubscriptionArgs(topic=topic_arn, protocol="email", endpoint=email),
                opts=child,
            )

        dims = {"EndpointName": ep, "VariantName": VARIANT}

        actions = [topic_arn]

        def alarm(key: str, alarm_args: aws.cloudwatch.MetricAlarmArgs) -> aws.cloudwatch.MetricAlarm:
            return aws.cloudwatch.MetricAlarm(f"{name}-{key}", alarm_args, opts=child)

        latency = alarm(
            "latency-p99",
            aws.cloudwatch.MetricAlarmArgs(
                name=f"{ep}-latency-p99",
                alarm_actions=actions,
                ok_actions=actions,
                alarm_description=f"p99 model latency above {args.latency_p99_ms} ms",
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                dimensions=dims,
                extended_statistic="p99",
                period=60,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                threshold=args.latency_p99_ms * 1000.0,  # ModelLatency is in microseconds
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
            ),
        )
        errors = alarm(
            "errors-5xx",
            aws.cloudwatch.MetricAlarmArgs(
                name=f"{ep}-errors-5xx",
                alarm_actions=actions,
                ok_actions=actions,
                alarm_description=f"more than {args.errors_5xx_per_5min} 5xx responses in 5 minutes",
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                dimensions=dims,
                statistic="Sum",
                period=300,
                evaluation_periods=1,
                threshold=float(args.errors_5xx_per_5min),
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
            ),
        )
        if args.serverless:
            saturation = alarm(
                "saturation",
                aws.cloudwatch.MetricAlarmArgs(
                    name=f"{ep}-saturation",
                    alarm_actions=actions,
                    ok_actions=actions,
                    alarm_description="serverless concurrency close to its maximum (throttling)",
                    namespace="AWS/SageMaker",
                    metric_name="ServerlessConcurrentExecutionsUtilization",
                    dimensions=dims,
                    statistic="Maximum",
                    period=60,
                    evaluation_periods=5,
                    threshold=args.saturation_percent / 100.0,
                    comparison_operator="GreaterThanThreshold",
                    treat_missing_data="notBreaching",
                ),
            )
        else:
            saturation = alarm(
                "saturation",
                aws.cloudwatch.MetricAlarmArgs(
                    name=f"{ep}-saturation",
                    alarm_actions=actions,
                    ok_actions=actions,
                    alarm_description=f"CPU utilization above {args.saturation_percent}% of {args.vcpus} vCPUs",
                    namespace="/aws/sagemaker/Endpoints",
                    metric_name="CPUUtilization",
                    dimensions=dims,
                    statistic="Average",
                    period=60,
                    evaluation_periods=10,
                    datapoints_to_alarm=8,
                    # CPUUtilization sums the cores: 0-400 % on 4 vCPUs (rules.METRICS_DOC).
                    threshold=args.saturation_percent * args.vcpus,
                    comparison_operator="GreaterThanThreshold",
                    treat_missing_data="notBreaching",
                ),
            )
        drift = alarm(
            "drift",
            aws.cloudwatch.MetricAlarmArgs(
                name=f"{ep}-drift",
                alarm_actions=actions,
                ok_actions=actions,
                alarm_description=(
                    "the runtime's calibrated drift test failed on a closed window (drift_alarm=1); "
                    f"false alarms about once per {args.drift_false_alarm_days:g} days"
                ),
                namespace=drift_namespace(ep),
                metric_name=DRIFT_METRIC,
                statistic="Maximum",
                # One verdict line per window: each period holds the last window's verdict.
                period=drift_period(args.drift_window_seconds),
                evaluation_periods=1,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
            ),
        )

        body = json.dumps(
            {
                "widgets": [
                    _widget(
                        0,
                        "p99 latency (us)",
                        [
                            [
                                "AWS/SageMaker",
                                "ModelLatency",
                                "EndpointName",
                                ep,
                                "VariantName",
                                VARIANT,
                                {"stat": "p99"},
                            ]
                        ],
                        args.region,
                    ),
                    _widget(
                        1,
                        "Invocations / 5xx",
                        [
                            [
                                "AWS/SageMaker",
                                "Invocations",
                                "EndpointName",
                                ep,
                                "VariantName",
                                VARIANT,
                                {"stat": "Sum"},
                            ],
                            [
                                "AWS/SageMaker",
                                "Invocation5XXErrors",
                                "EndpointName",
                                ep,
                                "VariantName",
                                VARIANT,
                                {"stat": "Sum"},
                            ],
                        ],
                        args.region,
                    ),
                    _widget(
                        2,
                        "Saturation",
                        [
                            [
                                "AWS/SageMaker",
                                "ServerlessConcurrentExecutionsUtilization",
                                "EndpointName",
                                ep,
                                "VariantName",
                                VARIANT,
                            ]
                            if args.serverless
                            else [
                                "/aws/sagemaker/Endpoints",
                                "CPUUtilization",
                                "EndpointName",
                                ep,
                                "VariantName",
                                VARIANT,
                            ]
                        ],
                        args.region,
                    ),
                    _widget(
                        3,
                        "Drift: calibrated score (alarm at 1) and verdict",
                        [[drift_namespace(ep), DRIFT_STATISTIC_METRIC, {"stat": "Maximum"}],
                         [drift_namespace(ep), DRIFT_METRIC, {"stat": "Maximum"}]],
                        args.region,
                    ),
                ]
            }
        )
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            aws.cloudwatch.DashboardArgs(dashboard_name=ep, dashboard_body=body),
            opts=child,
        )

        self.log_group_name = log_group.name
        self.log_group_arn = log_group.arn
        self.topic_arn = topic_arn
        self.alarm_names = {
            "latency": latency.name,
            "errors": errors.name,
            "saturation": saturation.name,
            "drift": drift.name,
        }
        self.alarm_arns = {"latency": latency.arn, "errors": errors.arn}
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs(
            {
                "log_group_name": self.log_group_name,
                "topic_arn": self.topic_arn,
                "alarm_names": self.alarm_names,
                "dashboard_name": self.dashboard_name,
            }
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


def _widget(i: int, title: str, metrics: list, region: str) -> dict:
    return {
        "type": "metric",
        "x": (i % 2) * 12,
        "y": (i // 2) * 6,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "metrics": metrics,
            "region": region,
            "period": 60,
            "view": "timeSeries",
        },
    }
