"""The GitHub Actions deploy trust each platform stack declares (kaizen:github): only the
repository's jobs in the workflows' environments can take the deploy identity, exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from infra.common.config import ConfigError, parse_config
from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS, templates

from .conftest import Run, load_stack_config

REPO = "kaizen-ml/kaizen"
SUBJECTS = [f"repo:{REPO}:environment:{e}" for e in DEPLOY_ENVIRONMENTS]


def _under_trust(run: Run, typ: str) -> list[Any]:
    return [r for r in run.of_type(typ) if "GithubDeployTrust$" in r.urn]


def test_the_workflows_run_cloud_jobs_only_in_the_trusted_environments() -> None:
    used = set()
    for text in templates().values():
        for job in yaml.safe_load(text)["jobs"].values():
            if job.get("permissions", {}).get("id-token") == "write":
                used.add(job["environment"])
    assert used == set(DEPLOY_ENVIRONMENTS)


def test_aws_role_trusts_exactly_the_environments(stack_run) -> None:
    run: Run = stack_run("aws-platform")
    provider = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    (role,) = _under_trust(run, "aws:iam/role:Role")
    statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert len(statement) == 1 and statement[0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    condition = statement[0]["Condition"]
    assert set(condition) == {"StringEquals"}  # no StringLike: no wildcard subject
    assert condition["StringEquals"]["token.actions.githubusercontent.com:sub"] == SUBJECTS
    assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    (policy,) = _under_trust(run, "aws:iam/rolePolicy:RolePolicy")
    assert any(s["Sid"] == "PassExecutionRolesToSageMaker" for s in json.loads(policy.inputs["policy"])["Statement"])
    assert "deployRoleArn" in run.outputs


def test_azure_identity_federates_exactly_the_environments(stack_run) -> None:
    run: Run = stack_run("azure-platform")
    credentials = _under_trust(run, "azure-native:managedidentity:FederatedIdentityCredential")
    assert sorted(c.inputs["subject"] for c in credentials) == sorted(SUBJECTS)
    assert {c.inputs["issuer"] for c in credentials} == {"https://token.actions.githubusercontent.com"}
    assert all(c.deps for c in credentials)  # written one after another
    (assignment,) = _under_trust(run, "azure-native:authorization:RoleAssignment")
    assert assignment.inputs["conditionVersion"] == "2.0"
    assert "roleAssignments/write" in assignment.inputs["condition"]
    (role,) = _under_trust(run, "azure-native:authorization:RoleDefinition")
    assert all("*" not in action for p in role.inputs["permissions"] for action in p["actions"])
    assert "deployClientId" in run.outputs


def test_gcp_pool_accepts_only_the_repository_in_its_environments(stack_run) -> None:
    run: Run = stack_run("gcp-platform")
    (provider,) = _under_trust(run, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
    assert provider.inputs["attributeCondition"] == (
        f"assertion.repository == '{REPO}' && assertion.environment in ['preview', 'staging', 'production']"
    )
    assert provider.inputs["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    (binding,) = _under_trust(run, "gcp:serviceaccount/iAMMember:IAMMember")
    assert binding.inputs["role"] == "roles/iam.workloadIdentityUser"
    assert binding.inputs["member"].endswith(f"/attribute.repository/{REPO}")
    members = {m.inputs["role"]: m for m in _under_trust(run, "gcp:projects/iAMMember:IAMMember")}
    assert members["roles/iam.serviceAccountUser"].inputs["condition"]["expression"].startswith(
        'resource.name.startsWith("projects/-/serviceAccounts/kz-")')
    (role,) = _under_trust(run, "gcp:projects/iAMCustomRole:IAMCustomRole")
    assert not any("*" in p for p in role.inputs["permissions"])
    assert {"workloadIdentityProvider", "deployServiceAccount"} <= set(run.outputs)


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-prod"])
def test_only_a_platform_stack_declares_the_trust(stack: str) -> None:
    raw = load_stack_config(stack)
    raw["github"] = {"repository": REPO}
    with pytest.raises(ConfigError, match="kaizen:github"):
        parse_config(raw, stack)
    bad = load_stack_config(stack.split("-")[0] + "-platform")
    bad["github"] = {"repository": "not a repo"}
    with pytest.raises(ConfigError, match=r"kaizen:github\.repository"):
        parse_config(bad, stack.split("-")[0] + "-platform")
