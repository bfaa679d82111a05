"""What SageMaker, CloudWatch and IAM accept, from AWS's documentation (one source per rule).

Shared by the stack code (to choose safe values), the policy pack and tests/infra/test_cloud_rules.py.
"""

from __future__ import annotations

import re

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

# Metric -> statistics that mean something for it (METRICS_DOC).
METRIC_STATISTICS = {
    ("AWS/SageMaker", "ModelLatency"): {"p99", "p90", "p50", "Average", "Maximum"},
    ("AWS/SageMaker", "Invocation5XXErrors"): {"Sum"},
    ("AWS/SageMaker", "ServerlessConcurrentExecutionsUtilization"): {"Maximum", "Average"},
    ("/aws/sagemaker/Endpoints", "CPUUtilization"): {"Average", "Maximum"},
}
