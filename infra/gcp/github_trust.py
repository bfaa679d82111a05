"""The GitHub Actions deploy trust in the GCP platform stack: a workload identity pool and provider
that accept only the repository's jobs in its environments, the deployer service account they may
impersonate, and its custom role (infra/gcp/deploy_role.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

from .deploy_role import ROLE_ID, act_as_condition, role, workload_identity


@dataclass(frozen=True)
class GithubDeployTrustArgs:
    project: str
    repository: str
    environments: list[str] = field(default_factory=lambda: list(DEPLOY_ENVIRONMENTS))
    pool_id: str = "kaizen-github"
    account_id: str = "kaizen-deployer"


class GithubDeployTrust(pulumi.ComponentResource):
    """Pool + OIDC provider + deployer account + custom role; exports what the workflows need."""

    provider_name: pulumi.Output[str]
    service_account: pulumi.Output[str]

    def __init__(self, name: str, args: GithubDeployTrustArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kaizen:gcp:GithubDeployTrust", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        wif = workload_identity(args.repository, args.environments)
        pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            gcp.iam.WorkloadIdentityPoolArgs(project=args.project, workload_identity_pool_id=args.pool_id,
                                             display_name="Kaizen GitHub Actions"),
            opts=child,
        )
        provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            gcp.iam.WorkloadIdentityPoolProviderArgs(
                project=args.project,
                workload_identity_pool_id=pool.workload_identity_pool_id,
                workload_identity_pool_provider_id="github",
                attribute_mapping=wif["attributeMapping"],
                attribute_condition=wif["attributeCondition"],
                oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=wif["issuerUri"]),
            ),
            opts=child,
        )
        account = gcp.serviceaccount.Account(
            f"{name}-account",
            gcp.serviceaccount.AccountArgs(project=args.project, account_id=args.account_id,
                                           display_name="Kaizen deployer (GitHub Actions)"),
            opts=child,
        )
        spec = role(args.project)
        custom = gcp.projects.IAMCustomRole(
            f"{name}-role",
            gcp.projects.IAMCustomRoleArgs(project=args.project, role_id=ROLE_ID, title=spec["title"],
                                           description=spec["description"], permissions=spec["includedPermissions"]),
            opts=child,
        )
        member = account.email.apply(lambda email: f"serviceAccount:{email}")
        gcp.projects.IAMMember(
            f"{name}-deployer",
            gcp.projects.IAMMemberArgs(project=args.project, role=custom.name, member=member),
            opts=child,
        )
        condition = act_as_condition()
        gcp.projects.IAMMember(
            f"{name}-act-as-runtime",
            gcp.projects.IAMMemberArgs(
                project=args.project, role="roles/iam.serviceAccountUser", member=member,
                condition=gcp.projects.IAMMemberConditionArgs(title=condition["title"],
                                                              expression=condition["expression"]),
            ),
            opts=child,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            gcp.serviceaccount.IAMMemberArgs(
                service_account_id=account.name,
                role="roles/iam.workloadIdentityUser",
                member=pool.name.apply(lambda n: f"principalSet://iam.googleapis.com/{n}/attribute.repository/"
                                                 f"{args.repository}"),
            ),
            opts=child,
        )
        self.provider_name = provider.name
        self.service_account = account.email
        self.register_outputs({"workloadIdentityProvider": self.provider_name, "serviceAccount": account.email})
