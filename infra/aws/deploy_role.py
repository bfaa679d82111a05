"""The IAM policy and GitHub Actions OIDC trust of the role that runs `pulumi up` for Kaizen stacks.

Each statement is keyed by the resource types the stacks declare (RESOURCE_ACTIONS), scoped to
the names the stacks use: execution roles under path /kaizen/, endpoints/alarms/dashboards/log
groups `kaizen-*`, repositories `kaizen/*`; KMS keys and SNS topics by the `kaizen-project` tag the
stack transform sets. Actions that AWS only authorizes on "*" (List/Describe, kms:CreateKey,
application-autoscaling, sts:GetCallerIdentity) are on "*" and nothing else.

    python -m infra.aws.deploy_role --account 123456789012 --region eu-west-1 --repo org/repo
prints {"policy": ..., "trust": ...} for `aws iam create-role` / `put-role-policy`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

from .identity import ROLE_PATH

PROJECT_TAG = "kaizen-project"

# resource type -> (actions, resource ARN templates); {p} partition, {r} region, {a} account
RESOURCE_ACTIONS: dict[str, tuple[list[str], list[str]]] = {
    "aws:sagemaker/model:Model": (
        ["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:DescribeModel"],
        ["arn:{p}:sagemaker:{r}:{a}:model/*"],
    ),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        ["sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig", "sagemaker:DescribeEndpointConfig"],
        ["arn:{p}:sagemaker:{r}:{a}:endpoint-config/*"],
    ),
    "aws:sagemaker/endpoint:Endpoint": (
        [
            "sagemaker:CreateEndpoint",
            "sagemaker:UpdateEndpoint",
            "sagemaker:DeleteEndpoint",
            "sagemaker:DescribeEndpoint",
            "sagemaker:AddTags",
            "sagemaker:DeleteTags",
            "sagemaker:ListTags",
        ],
        [
            "arn:{p}:sagemaker:{r}:{a}:endpoint/kaizen-*",
            "arn:{p}:sagemaker:{r}:{a}:endpoint-config/*",
            "arn:{p}:sagemaker:{r}:{a}:model/*",
        ],
    ),
    "aws:iam/role:Role": (
        [
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:GetRole",
            "iam:UpdateRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:ListRolePolicies",
            "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole",
        ],
        ["arn:{p}:iam::{a}:role" + ROLE_PATH + "*"],
    ),
    "aws:iam/rolePolicy:RolePolicy": (
        ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"],
        ["arn:{p}:iam::{a}:role" + ROLE_PATH + "*"],
    ),
    "aws:ecr/repository:Repository": (
        [
            "ecr:CreateRepository",
            "ecr:DeleteRepository",
            "ecr:DescribeRepositories",
            "ecr:PutImageScanningConfiguration",
            "ecr:PutImageTagMutability",
            "ecr:TagResource",
            "ecr:UntagResource",
            "ecr:ListTagsForResource",
        ],
        ["arn:{p}:ecr:{r}:{a}:repository/kaizen/*"],
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": (
        ["ecr:PutLifecyclePolicy", "ecr:GetLifecyclePolicy", "ecr:DeleteLifecyclePolicy"],
        ["arn:{p}:ecr:{r}:{a}:repository/kaizen/*"],
    ),
    "aws:cloudwatch/logGroup:LogGroup": (
        [
            "logs:CreateLogGroup",
            "logs:DeleteLogGroup",
            "logs:PutRetentionPolicy",
            "logs:TagResource",
            "logs:UntagResource",
            "logs:ListTagsForResource",
        ],
        ["arn:{p}:logs:{r}:{a}:log-group:/aws/sagemaker/Endpoints/kaizen-*"],
    ),
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": (
        ["logs:PutMetricFilter", "logs:DeleteMetricFilter"],
        ["arn:{p}:logs:{r}:{a}:log-group:/aws/sagemaker/Endpoints/kaizen-*"],
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        [
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:TagResource",
            "cloudwatch:ListTagsForResource",
        ],
        ["arn:{p}:cloudwatch:{r}:{a}:alarm:kaizen-*"],
    ),
    "aws:cloudwatch/dashboard:Dashboard": (
        ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
        ["arn:{p}:cloudwatch::{a}:dashboard/kaizen-*"],
    ),
    "aws:s3/bucket:Bucket": (
        [
            "s3:CreateBucket",
            "s3:DeleteBucket",
            "s3:ListBucket",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:ListBucketVersions",
            "s3:Get*",
            "s3:PutBucketTagging",
        ],
        ["arn:{p}:s3:::capture-bucket-*", "arn:{p}:s3:::capture-bucket-*/*"],
    ),
    "aws:s3/bucketPolicy:BucketPolicy": (
        ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"],
        ["arn:{p}:s3:::capture-bucket-*"],
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
        ["s3:PutBucketPublicAccessBlock"],
        ["arn:{p}:s3:::capture-bucket-*"],
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (
        ["s3:PutBucketOwnershipControls"],
        ["arn:{p}:s3:::capture-bucket-*"],
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        ["s3:PutEncryptionConfiguration"],
        ["arn:{p}:s3:::capture-bucket-*"],
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": (
        ["s3:PutLifecycleConfiguration"],
        ["arn:{p}:s3:::capture-bucket-*"],
    ),
    "aws:sns/topic:Topic": (
        [
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:GetTopicAttributes",
            "sns:SetTopicAttributes",
            "sns:TagResource",
            "sns:ListTagsForResource",
        ],
        ["arn:{p}:sns:{r}:{a}:monitoring-alarms-*"],
    ),
    "aws:sns/topicSubscription:TopicSubscription": (
        ["sns:Subscribe", "sns:Unsubscribe", "sns:GetSubscriptionAttributes"],
        ["arn:{p}:sns:{r}:{a}:*"],
    ),
    # Keys carry the stack transform's kaizen-project tag: administered by tag, created with it.
    "aws:kms/key:Key": (
        [
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:PutKeyPolicy",
            "kms:GetKeyRotationStatus",
            "kms:EnableKeyRotation",
            "kms:ScheduleKeyDeletion",
            "kms:TagResource",
            "kms:ListResourceTags",
            "kms:CreateGrant",
        ],
        ["arn:{p}:kms:{r}:{a}:key/*"],
    ),
    # Application Auto Scaling has no resource-level permissions for these calls.
    "aws:appautoscaling/target:Target": (
        [
            "application-autoscaling:RegisterScalableTarget",
            "application-autoscaling:DeregisterScalableTarget",
            "application-autoscaling:DescribeScalableTargets",
            "application-autoscaling:TagResource",
            "application-autoscaling:ListTagsForResource",
        ],
        ["*"],
    ),
    "aws:appautoscaling/policy:Policy": (
        [
            "application-autoscaling:PutScalingPolicy",
            "application-autoscaling:DeleteScalingPolicy",
            "application-autoscaling:DescribeScalingPolicies",
        ],
        ["*"],
    ),
}
# Read-only calls (and key creation) AWS authorizes only on "*".
GLOBAL_ACTIONS = [
    "sts:GetCallerIdentity",
    "ecr:GetAuthorizationToken",
    "cloudwatch:DescribeAlarms",
    "logs:DescribeLogGroups",
    "logs:DescribeMetricFilters",
    "sagemaker:ListTags",
    "iam:ListRoles",
]


def deploy_policy(account: str, region: str, partition: str = "aws") -> dict[str, Any]:
    statements: list[dict[str, Any]] = []
    for i, (typ, (actions, resources)) in enumerate(sorted(RESOURCE_ACTIONS.items())):
        statement: dict[str, Any] = {
            "Sid": f"R{i}" + "".join(c for c in typ.rsplit(":", 1)[-1] if c.isalnum()),
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": [r.format(p=partition, r=region, a=account) for r in resources],
        }
        if typ == "aws:kms/key:Key":
            statement["Condition"] = {"StringEquals": {f"aws:ResourceTag/{PROJECT_TAG}": "kaizen"}}
        statements.append(statement)
    statements += [
        {
            "Sid": "CreateTaggedKeys",
            "Effect": "Allow",
            "Action": ["kms:CreateKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {f"aws:RequestTag/{PROJECT_TAG}": "kaizen"}},
        },
        {"Sid": "ReadOnlyGlobal", "Effect": "Allow", "Action": sorted(GLOBAL_ACTIONS), "Resource": "*"},
        {
            "Sid": "PassExecutionRolesToSageMaker",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [f"arn:{partition}:iam::{account}:role{ROLE_PATH}*"],
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def github_trust(
    account: str, repo: str, environments: Sequence[str] = DEPLOY_ENVIRONMENTS, partition: str = "aws"
) -> dict[str, Any]:
    """Trust for GitHub Actions OIDC: jobs of one repository running in one of `environments`
    (exact subjects, no wildcard: a fork, another branch's job without an environment, or another
    repository cannot assume the role)."""
    provider = "token.actions.githubusercontent.com"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:{partition}:iam::{account}:oidc-provider/{provider}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{provider}:aud": "sts.amazonaws.com",
                        f"{provider}:sub": [f"repo:{repo}:environment:{env}" for env in environments],
                    },
                },
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--account", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--repo", required=True, help="GitHub owner/name trusted through OIDC")
    parser.add_argument("--partition", default="aws")
    a = parser.parse_args()
    doc = {
        "policy": deploy_policy(a.account, a.region, a.partition),
        "trust": github_trust(a.account, a.repo, partition=a.partition),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
