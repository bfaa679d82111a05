"""What batch scoring (batch.py) and retraining (retraining.py) share on AWS: a role per service
that only this account's resources of that service may assume, a policy allowing one start action
on one resource, and the cron dialect of EventBridge (rules and Scheduler)."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws

from .identity import ROLE_PATH


def aws_cron(cron: str) -> str:
    """Five-field cron (UTC) as EventBridge's `cron(m h dom mon dow year)`: one of dom/dow is `?`,
    and days of the week count from 1 (Sunday)."""
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        dow = "?"
    else:
        dow = re.sub(r"\d", lambda m: str(int(m.group()) % 7 + 1), dow)
        if dom != "*":
            raise ValueError(f"{cron!r}: EventBridge cannot restrict both the day of month and the day of week")
        dom = "?"
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def assume_policy(service: str, account_id: str) -> str:
    """Trust policy: `service` may assume the role on behalf of this account only (confused deputy)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}]})


def service_role(name: str, service: str, account_id: pulumi.Input[str], opts: pulumi.ResourceOptions) -> aws.iam.Role:
    """A role under the Kaizen path that `service` assumes for this account."""
    return aws.iam.Role(name, aws.iam.RoleArgs(
        path=ROLE_PATH,
        assume_role_policy=pulumi.Output.from_input(account_id).apply(lambda a: assume_policy(service, a))),
        opts=opts)


def start_policy(action: str, resource_arn: str, sid: str | None = None) -> dict[str, Any]:
    """Allow one start action (states:StartExecution, sagemaker:StartPipelineExecution) on one resource."""
    statement = {"Effect": "Allow", "Action": [action], "Resource": [resource_arn]}
    return {"Version": "2012-10-17", "Statement": [{"Sid": sid, **statement} if sid else statement]}
