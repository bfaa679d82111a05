"""Least-privilege SageMaker execution role, as AWS documents it for CreateModel roles.

Allowed: pull from exactly one ECR repository, write logs to exactly the endpoint's log group,
read exactly the endpoint's auto-rollback alarms, write captured data under exactly one S3
prefix with exactly one KMS key. Two statements need `Resource: "*"` because the actions have no
resource-level permissions (infra/aws/rules.py): `ecr:GetAuthorizationToken` (a registry login
token; repository access stays scoped by the pull statement) and `cloudwatch:PutMetricData`
narrowed to the endpoint metrics namespace by condition. The trust policy is AWS's documented
confused-deputy condition for SageMaker Inference roles (TRUST_DOC).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .registry import ECR_PULL_ACTIONS
from .rules import ENDPOINT_METRICS_NAMESPACE

ROLE_PATH = "/kaizen/"
TRUST_DOC = (
    "https://docs.aws.amazon.com/sagemaker/latest/dg/security-confused-deputy-prevention.html"
    "#security-confused-deputy-inference"
)


@dataclass(frozen=True)
class SageMakerRoleArgs:
    account_id: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    region: str
    partition: pulumi.Input[str]
    capture_prefix_arn: pulumi.Input[str] | None = None  # arn:aws:s3:::bucket/prefix
    capture_kms_key_arn: pulumi.Input[str] | None = None
    alarm_arns: list[pulumi.Input[str]] | None = None  # auto-rollback alarms (DescribeAlarms)


def trust_policy(partition: str, region: str, account: str) -> dict[str, Any]:
    """SageMaker may assume the role only for this account's resources in this region: AWS's
    template for real-time, serverless and asynchronous inference (TRUST_DOC) uses `aws:SourceArn`
    `arn:<partition>:sagemaker:<region>:<account>:*` (the `*` is part of the template, not a
    wildcard to narrow), with no `aws:SourceAccount`."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:{partition}:sagemaker:{region}:{account}:*"}},
            }
        ],
    }


def execution_policy(
    repository_arn: str,
    log_group_arn: str,
    capture_prefix_arn: str | None,
    capture_kms_key_arn: str | None,
    alarm_arns: list[str] | None = None,
) -> dict[str, Any]:
    """The role's inline policy document (pure, so tests and the policy pack can reuse it)."""
    statements: list[dict[str, Any]] = [
        {"Sid": "EcrAuthToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullModelImage", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": [repository_arn]},
        {
            "Sid": "EndpointMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": ENDPOINT_METRICS_NAMESPACE}},
        },
        {
            "Sid": "EndpointLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        },
    ]
    if capture_prefix_arn is not None and capture_kms_key_arn is not None:
        statements += [
            {
                "Sid": "WriteCapturedData",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"{capture_prefix_arn}/*"],
            },
            {
                "Sid": "EncryptCapturedData",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                "Resource": [capture_kms_key_arn],
            },
        ]
    if alarm_arns:
        # Deployment guardrails read the auto-rollback alarms with the execution role (ROLES_DOC).
        statements.append(
            {
                "Sid": "ReadRollbackAlarms",
                "Effect": "Allow",
                "Action": ["cloudwatch:DescribeAlarms"],
                "Resource": sorted(alarm_arns),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


class SageMakerExecutionRole(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, args: SageMakerRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:aws:SageMakerExecutionRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        assume = pulumi.Output.all(args.partition, args.account_id).apply(
            lambda v: json.dumps(trust_policy(str(v[0]), args.region, str(v[1])))
        )
        role = aws.iam.Role(
            f"{name}-role",
            aws.iam.RoleArgs(
                assume_role_policy=assume,
                description="Kaizen SageMaker execution role (least privilege)",
                path=ROLE_PATH,  # the deploy role may create/pass roles under this path only
                max_session_duration=3600,
            ),
            opts=child,
        )
        document = pulumi.Output.all(
            args.repository_arn,
            args.log_group_arn,
            args.capture_prefix_arn,
            args.capture_kms_key_arn,
            pulumi.Output.all(*(args.alarm_arns or [])),
        ).apply(lambda v: json.dumps(execution_policy(v[0], v[1], v[2], v[3], list(v[4]))))
        policy = aws.iam.RolePolicy(f"{name}-policy", aws.iam.RolePolicyArgs(role=role.id, policy=document), opts=child)
        # Consumers wait for the policy, so SageMaker never assumes a role without permissions.
        self.role_arn = pulumi.Output.all(role.arn, policy.id).apply(lambda v: v[0])
        self.role_name = role.name
        self.register_outputs({"role_arn": self.role_arn, "role_name": self.role_name})
