"""The GitHub Actions deploy trust in the Azure platform stack: a user-assigned identity whose
federated credentials accept only the repository's jobs in its environments, the custom deploy
role, and its assignment on the subscription with the condition that it may only grant AcrPull and
Storage Blob Data Reader (infra/azure/deploy_role.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS

from .deploy_role import assignment_condition, federated_credentials, role_definition


@dataclass(frozen=True)
class GithubDeployTrustArgs:
    repository: str
    subscription_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    location: str
    environments: list[str] = field(default_factory=lambda: list(DEPLOY_ENVIRONMENTS))
    identity_name: str = "kaizen-github-deploy"


class GithubDeployTrust(pulumi.ComponentResource):
    """Identity + federated credentials + custom role + conditioned assignment."""

    client_id: pulumi.Output[str]

    def __init__(self, name: str, args: GithubDeployTrustArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("kaizen:azure:GithubDeployTrust", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = azure.managedidentity.UserAssignedIdentity(
            f"{name}-uai",
            resource_group_name=args.resource_group_name,
            location=args.location,
            resource_name_=args.identity_name,
            opts=child,
        )
        previous: list[pulumi.Resource] = [identity]
        for credential in federated_credentials(args.repository, args.environments):
            previous = [azure.managedidentity.FederatedIdentityCredential(
                f"{name}-{credential['name']}",
                resource_group_name=args.resource_group_name,
                resource_name_=identity.name,  # the identity (`resource_name` is the Pulumi name)
                federated_identity_credential_resource_name=credential["name"],
                issuer=credential["issuer"],
                subject=credential["subject"],
                audiences=credential["audiences"],
                # Azure refuses concurrent writes of federated credentials on one identity: one at a time.
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )]
        spec = role_definition("<subscription>")
        scope = pulumi.Output.concat("/subscriptions/", args.subscription_id)
        role = azure.authorization.RoleDefinition(
            f"{name}-role",
            azure.authorization.RoleDefinitionArgs(
                scope=scope,
                role_name=spec["Name"],
                description=spec["Description"],
                role_type="CustomRole",
                assignable_scopes=[scope],
                permissions=[azure.authorization.PermissionArgs(actions=spec["Actions"], not_actions=[])],
            ),
            opts=child,
        )
        azure.authorization.RoleAssignment(
            f"{name}-assignment",
            azure.authorization.RoleAssignmentArgs(
                scope=scope,
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=role.id,
                condition=assignment_condition(),
                condition_version="2.0",
            ),
            opts=child,
        )
        self.client_id = identity.client_id
        self.register_outputs({"clientId": self.client_id})
