"""Deploy roles shipped as code cover exactly what the stacks declare, scoped and OIDC-trusted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.aws import deploy_role as aws_role
from infra.azure import deploy_role as azure_role
from infra.gcp import deploy_role as gcp_role
from infra.policy.guardrails import policy_violations
from tests.support import ROOT

from .conftest import Run
from .test_stacks import ALL

COVERAGE = {
    "aws": aws_role.RESOURCE_ACTIONS,
    "azure": azure_role.RESOURCE_ACTIONS,
    "gcp": gcp_role.RESOURCE_PERMISSIONS,
}


@pytest.mark.parametrize("stack", ALL)
def test_deploy_role_covers_every_declared_resource_type(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    # The GitHub deploy trust is bootstrapped once by an administrator, not by the deploy role.
    declared = {r.typ for r in run.custom if not r.typ.startswith("pulumi:") and "GithubDeployTrust$" not in r.urn}
    assert declared - set(COVERAGE[stack.split("-")[0]]) == set()


def test_aws_deploy_policy_is_scoped() -> None:
    doc = aws_role.deploy_policy("123456789012", "eu-west-1")
    star = [s for s in doc["Statement"] if s["Resource"] == "*" or s["Resource"] == ["*"]]
    starred = {a for s in star for a in s["Action"]}
    # only calls AWS authorizes on "*" alone, and key creation bound to the project tag
    assert all(
        a.split(":")[0] in ("sts", "ecr", "cloudwatch", "logs", "sagemaker", "iam", "application-autoscaling", "kms")
        for a in starred
    )
    assert not any(a.startswith(("iam:Create", "iam:Put", "iam:PassRole", "sagemaker:Create", "s3:")) for a in starred)
    pass_role = next(s for s in doc["Statement"] if s["Sid"] == "PassExecutionRolesToSageMaker")
    assert pass_role["Resource"] == ["arn:aws:iam::123456789012:role/kaizen/*"]
    assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
    assert all("*" not in a.split(":")[1] or a == "s3:Get*" for s in doc["Statement"] for a in s["Action"])
    trust = aws_role.github_trust("123456789012", "org/kaizen")["Statement"][0]
    assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        "repo:org/kaizen:environment:preview",
        "repo:org/kaizen:environment:staging",
        "repo:org/kaizen:environment:production",
    ]
    assert "StringLike" not in trust["Condition"]  # exact subjects: no wildcard
    assert not policy_violations(aws_role.github_trust("123456789012", "org/kaizen"))


def test_azure_role_has_no_wildcards_and_assigns_only_four_roles() -> None:
    role = azure_role.role_definition("0000")
    assert role["AssignableScopes"] == ["/subscriptions/0000"]
    assert all("*" not in a for a in role["Actions"])
    assert "Microsoft.Authorization/roleAssignments/write" in role["Actions"]
    cond = azure_role.assignment_condition()
    assert "7f951dda-4ed3-4680-a7ca-43fe172d538d" in cond and "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1" in cond
    # Storage Blob Data Contributor (the retraining/batch output container) and the Kaizen job starter
    assert "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in cond and azure_role.STARTER_ROLE in cond
    assert len(azure_role.ASSIGNABLE_ROLES) == 4
    assert "Microsoft.Authorization/roleDefinitions/write" not in role["Actions"]
    starter = azure_role.starter_role_definition("0000")
    assert starter["Actions"] == ["Microsoft.App/jobs/start/action"] and starter["DataActions"] == []
    subjects = {c["subject"] for c in azure_role.federated_credentials("org/kaizen")}
    assert subjects == {f"repo:org/kaizen:environment:{e}" for e in ("preview", "staging", "production")}


def test_gcp_role_replaces_the_admin_roles() -> None:
    perms = gcp_role.role("kaizen-test")["includedPermissions"]
    assert "iam.serviceAccounts.actAs" not in perms  # bound separately, with a condition
    assert not any(p.startswith(("iam.roles.", "resourcemanager.projects.setIamPolicy")) for p in perms)
    assert "kz-" in gcp_role.act_as_condition()["expression"]
    assert gcp_role.workload_identity("org/kaizen")["attributeCondition"] == (
        "assertion.repository == 'org/kaizen' && assertion.environment in ['preview', 'staging', 'production']"
    )


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("infra.aws.deploy_role", ["--account", "123456789012", "--region", "eu-west-1", "--repo", "o/r"]),
        ("infra.azure.deploy_role", ["--subscription", "0000", "--repo", "o/r"]),
        ("infra.gcp.deploy_role", ["--project", "kaizen-test", "--repo", "o/r"]),
    ],
)
def test_cli_prints_json(module: str, args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)
