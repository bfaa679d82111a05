"""The GitHub Actions deploy trust in the AWS platform stack: the OIDC provider, the deploy role
that only the repository's jobs in its environments can assume, and the role's scoped policy
(infra/aws/deploy_role.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

from .deploy_role import deploy_policy, github_trust

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"


@dataclass(frozen=True)
class GithubDeployTrustArgs:
    repository: str
    account_id: pulumi.Input[str]
    region: str
    environments: list[str] = field(default_factory=lambda: list(DEPLOY_ENVIRONMENTS))
    role_name: str = "kaizen-github-deploy"
    existing_provider_arn: str | None = None  # an account holds one provider per URL


class GithubDeployTrust(pulumi.ComponentResource):
    """OIDC provider + deploy role + its inline policy; exports the role ARN for the workflows."""

    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: GithubDeployTrustArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kaizen:aws:GithubDeployTrust", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.existing_provider_arn is None:
            aws.iam.OpenIdConnectProvider(
                f"{name}-oidc",
                aws.iam.OpenIdConnectProviderArgs(url=GITHUB_OIDC_URL, client_id_lists=["sts.amazonaws.com"]),
                opts=child,
            )
        role = aws.iam.Role(
            f"{name}-role",
            aws.iam.RoleArgs(
                name=args.role_name,
                description=f"pulumi up of Kaizen stacks from GitHub Actions of {args.repository}",
                assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                    lambda account: json.dumps(github_trust(account, args.repository, args.environments))
                ),
                max_session_duration=3600,
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            aws.iam.RolePolicyArgs(
                role=role.id,
                policy=pulumi.Output.from_input(args.account_id).apply(
                    lambda account: json.dumps(deploy_policy(account, args.region))
                ),
            ),
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})
