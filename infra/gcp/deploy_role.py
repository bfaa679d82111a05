"""Custom GCP role for the service account that runs `pulumi up` for Kaizen stacks, and the
Workload Identity Federation settings for GitHub Actions.

Replaces project-wide run.admin / artifactregistry.admin / iam.serviceAccountAdmin /
logging.admin / monitoring.editor: the permissions below are those of exactly the resource types
the stacks declare (RESOURCE_PERMISSIONS). `iam.serviceAccounts.actAs` (deploying Cloud Run as the
runtime account) is bound with an IAM condition to the stacks' runtime accounts (`kz-*`).

    python -m infra.gcp.deploy_role --project <id> --repo org/repo
prints {"role", "actAsCondition", "workloadIdentity"}; then
`gcloud iam roles create kaizenDeployer --project <id> --file role.yaml` (the "role" object).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

ROLE_ID = "kaizenDeployer"


def _crud(prefix: str, *extra: str) -> list[str]:
    return [f"{prefix}.{v}" for v in ("create", "get", "update", "delete", *extra)]


RESOURCE_PERMISSIONS: dict[str, list[str]] = {
    "gcp:artifactregistry/repository:Repository": _crud("artifactregistry.repositories", "list"),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": [
        "artifactregistry.repositories.getIamPolicy",
        "artifactregistry.repositories.setIamPolicy",
    ],
    "gcp:cloudrunv2/service:Service": [*_crud("run.services", "list"), "run.operations.get", "run.revisions.get"],
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ["run.services.getIamPolicy", "run.services.setIamPolicy"],
    "gcp:serviceaccount/account:Account": _crud("iam.serviceAccounts", "list"),
    "gcp:logging/metric:Metric": _crud("logging.logMetrics"),
    "gcp:logging/projectBucketConfig:ProjectBucketConfig": _crud("logging.buckets", "undelete"),
    "gcp:logging/projectSink:ProjectSink": _crud("logging.sinks"),
    "gcp:monitoring/alertPolicy:AlertPolicy": _crud("monitoring.alertPolicies"),
    "gcp:monitoring/dashboard:Dashboard": _crud("monitoring.dashboards"),
    "gcp:monitoring/notificationChannel:NotificationChannel": _crud("monitoring.notificationChannels"),
    # provider-side only (pulumi-random, pulumiverse-time): no GCP call
    "random:index/randomId:RandomId": [],
    "time:index/sleep:Sleep": [],
}
# invokes: gcp.organizations.get_project (the service agent's project number)
INVOKE_PERMISSIONS = ["resourcemanager.projects.get"]


def role(project: str) -> dict[str, Any]:
    perms = sorted({p for ps in RESOURCE_PERMISSIONS.values() for p in ps} | set(INVOKE_PERMISSIONS))
    return {
        "name": f"projects/{project}/roles/{ROLE_ID}",
        "title": "Kaizen deployer",
        "description": "Runs `pulumi up` for Kaizen stacks: the resource types they declare, nothing else.",
        "stage": "GA",
        "includedPermissions": perms,
    }


def act_as_condition() -> dict[str, str]:
    """Binding of roles/iam.serviceAccountUser for the deployer, limited to the runtime accounts."""
    return {
        "title": "kaizen-runtime-accounts",
        "expression": 'resource.name.startsWith("projects/-/serviceAccounts/kz-")',
    }


def workload_identity(repo: str, environments: Sequence[str] = DEPLOY_ENVIRONMENTS) -> dict[str, Any]:
    """Pool provider for GitHub Actions OIDC, restricted to one repository's environments."""
    allowed = ", ".join(f"'{e}'" for e in environments)
    return {
        "issuerUri": "https://token.actions.githubusercontent.com",
        "attributeMapping": {
            "google.subject": "assertion.sub",
            "attribute.repository": "assertion.repository",
            "attribute.environment": "assertion.environment",
        },
        "attributeCondition": f"assertion.repository == '{repo}' && assertion.environment in [{allowed}]",
        "principalSet": "principalSet://iam.googleapis.com/projects/<number>/locations/global/"
        f"workloadIdentityPools/<pool>/attribute.repository/{repo}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--repo", required=True, help="GitHub owner/name trusted through OIDC")
    a = parser.parse_args()
    doc = {"role": role(a.project), "actAsCondition": act_as_condition(), "workloadIdentity": workload_identity(a.repo)}
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
