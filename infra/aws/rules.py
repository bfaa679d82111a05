"""What SageMaker, CloudWatch and IAM accept, from AWS's documentation (one source per rule).

Shared by the stack code (to choose safe values), the policy pack and tests/infra/test_cloud_rules.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..common.rules import Res, Rule, as_list, get, in_range, is_num

SERVERLESS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html#serverless-endpoints-how-it-works-exclusions"
ENDPOINT_CONFIG_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html"
PRODUCTION_VARIANT_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariant.html"
SERVERLESS_CONFIG_DOC = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html"
)
ROLES_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createmodel-perms"
ECR_TOKEN_DOC = "https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html"
METRICS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html"
SNS_CW_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html"
LOG_RETENTION_DOC = "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html"

# "Serverless Inference ... not supported: ... VPC configuration, network isolation, data capture,
# multiple production variants, Model Monitor, inference pipelines" (SERVERLESS_DOC).
SERVERLESS_EXCLUDED_MODEL = ("enableNetworkIsolation", "vpcConfig")
SERVERLESS_EXCLUDED_CONFIG = ("dataCaptureConfig", "kmsKeyArn")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # SERVERLESS_CONFIG_DOC
SERVERLESS_MAX_CONCURRENCY = (1, 200)  # SERVERLESS_CONFIG_DOC
STARTUP_HEALTH_CHECK_S = (60, 3600)  # PRODUCTION_VARIANT_DOC ContainerStartupHealthCheckTimeoutInSeconds
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922)
LOG_RETENTION_DAYS += (3288, 3653)  # LOG_RETENTION_DOC

# "You can't request a KmsKeyId when using an instance type with local storage" (ENDPOINT_CONFIG_DOC):
# NVMe instance-store families (https://docs.aws.amazon.com/sagemaker/latest/dg/host-instance-storage.html).
_INSTANCE_STORE = re.compile(r"^ml\.(g4dn|g4ad|g5|g6|g6e|gr6|p3dn|p4d|p4de|p5|p5e|p5en|trn1|trn1n|[a-z]+\d+[a-z]*d)\.")


def has_instance_storage(instance_type: str) -> bool:
    """True for instance types whose ML storage is local NVMe (no volume KMS key allowed)."""
    return bool(_INSTANCE_STORE.match(instance_type))


# The only wildcard-resource statements AWS documents for a SageMaker execution role (ROLES_DOC):
# ecr:GetAuthorizationToken has no resource-level permissions (ECR_TOKEN_DOC); PutMetricData
# neither, so it is narrowed by the cloudwatch:namespace condition key.
ALLOWED_WILDCARD_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken": None,
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
}
ENDPOINT_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"

# SageMaker Pipelines names the job of each step itself, `pipelines-<execution id>-<step>-<suffix>`
# (https://docs.aws.amazon.com/sagemaker/latest/dg/build-and-manage-steps.html: a step's job name is
# generated; TrainingJobName is not accepted in its arguments), so the pipeline's role and the training
# role's log streams can only be scoped to that prefix. The one prefix wildcard the policy pack allows:
# on training jobs and training-job log streams of one account and region, nothing else.
PIPELINE_JOB_PREFIX = "pipelines-"
PIPELINE_PREFIX_RESOURCE = re.compile(
    r"^arn:aws:(sagemaker:[a-z0-9-]+:\d{12}:training-job/"
    r"|logs:[a-z0-9-]+:\d{12}:log-group:/aws/sagemaker/TrainingJobs:log-stream:)pipelines-\*$")

# Metric -> statistics that mean something for it (METRICS_DOC).
METRIC_STATISTICS = {
    ("AWS/SageMaker", "ModelLatency"): {"p99", "p90", "p50", "Average", "Maximum"},
    ("AWS/SageMaker", "Invocation5XXErrors"): {"Sum"},
    ("AWS/SageMaker", "ServerlessConcurrentExecutionsUtilization"): {"Maximum", "Average"},
    ("/aws/sagemaker/Endpoints", "CPUUtilization"): {"Average", "Maximum"},
}


# --- the table -----------------------------------------------------------------------------------
MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def _serverless(config: Res) -> bool:
    return any(get(v, "serverlessConfig") for v in as_list(config.props.get("productionVariants")))


def _statements(all_: list[Res]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for r in all_:
        if r.typ != ROLE_POLICY or not isinstance(r.props.get("policy"), str):
            continue
        out += [s for s in as_list(json.loads(r.props["policy"]).get("Statement")) if s.get("Effect") == "Allow"]
    return out


def _serverless_model(res: Res, all_: list[Res]) -> Iterable[str]:
    if any(r.typ == CONFIG and _serverless(r) for r in all_):
        for key in SERVERLESS_EXCLUDED_MODEL:
            if res.props.get(key):
                yield f"{key} is set, but Serverless Inference does not support it"


def _serverless_config(res: Res, _: list[Res]) -> Iterable[str]:
    for v in as_list(res.props.get("productionVariants")):
        sc = get(v, "serverlessConfig")
        if not sc:
            continue
        if sc.get("memorySizeInMb") not in SERVERLESS_MEMORY_MB:
            yield f"serverless memorySizeInMb {sc.get('memorySizeInMb')} not in {SERVERLESS_MEMORY_MB}"
        yield from in_range(sc.get("maxConcurrency"), *SERVERLESS_MAX_CONCURRENCY, "serverless maxConcurrency")
        for key in SERVERLESS_EXCLUDED_CONFIG:
            if res.props.get(key):
                yield f"{key} is set on a serverless endpoint configuration"


def _volume_key(res: Res, _: list[Res]) -> Iterable[str]:
    for v in as_list(res.props.get("productionVariants")):
        t = get(v, "instanceType")
        if isinstance(t, str) and has_instance_storage(t) and res.props.get("kmsKeyArn"):
            yield f"kmsKeyArn set with {t}, which has local NVMe storage"
        yield from in_range(
            get(v, "containerStartupHealthCheckTimeoutInSeconds"),
            *STARTUP_HEALTH_CHECK_S,
            "containerStartupHealthCheckTimeoutInSeconds",
        )


def _alarm_statistic(res: Res, _: list[Res]) -> Iterable[str]:
    key = (res.props.get("namespace"), res.props.get("metricName"))
    allowed = METRIC_STATISTICS.get(key)  # type: ignore[arg-type]
    stat = res.props.get("extendedStatistic") or res.props.get("statistic")
    if allowed is not None and stat not in allowed:
        yield f"{key[1]} with statistic {stat!r}; meaningful: {sorted(allowed)}"


def _rollback_alarms_readable(res: Res, all_: list[Res]) -> Iterable[str]:
    alarms = as_list(get(res.props, "deploymentConfig", "autoRollbackConfiguration", "alarms"))
    names = [a.get("alarmName") for a in alarms if isinstance(a, Mapping)]
    readable = [
        str(r)
        for s in _statements(all_)
        if "cloudwatch:DescribeAlarms" in as_list(s.get("Action"))
        for r in as_list(s.get("Resource"))
    ]
    for n in names:
        if isinstance(n, str) and not any(r == "*" or r.endswith(f":alarm:{n}") for r in readable):
            yield f"auto-rollback alarm {n} is not readable by the execution role (cloudwatch:DescribeAlarms)"


def _model_can_pull(res: Res, all_: list[Res]) -> Iterable[str]:
    if not any("ecr:GetAuthorizationToken" in as_list(s.get("Action")) for s in _statements(all_)):
        yield "the execution role lacks ecr:GetAuthorizationToken (documented for CreateModel roles)"


def _log_retention(res: Res, _: list[Res]) -> Iterable[str]:
    days = res.props.get("retentionInDays")
    if is_num(days) and days not in LOG_RETENTION_DAYS:
        yield f"retentionInDays {days} is not a CloudWatch Logs value"


RULES = [
    Rule("aws-serverless-model-exclusions", (MODEL,), _serverless_model, SERVERLESS_DOC),
    Rule("aws-serverless-config", (CONFIG,), _serverless_config, SERVERLESS_CONFIG_DOC),
    Rule("aws-volume-key-and-startup", (CONFIG,), _volume_key, ENDPOINT_CONFIG_DOC),
    Rule("aws-alarm-statistic", (ALARM,), _alarm_statistic, METRICS_DOC),
    Rule("aws-rollback-alarms-readable", (ENDPOINT,), _rollback_alarms_readable, ROLES_DOC),
    Rule("aws-model-pull-token", (MODEL,), _model_can_pull, ROLES_DOC),
    Rule("aws-log-retention", ("aws:cloudwatch/logGroup:LogGroup",), _log_retention, LOG_RETENTION_DOC),
]
