"""User-assigned managed identity that pulls the model image (AcrPull on the registry only)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from infra.azure.registry import ACR_PULL_ROLE


@dataclass(frozen=True)
class PullIdentityArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    identity_name: str
    registry_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]


class PullIdentity(pulumi.ComponentResource):
    identity_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    client_id: pulumi.Output[str]
    role_assignment_id: pulumi.Output[str]

    def __init__(self, name: str, args: PullIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:PullIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        identity = azure.managedidentity.UserAssignedIdentity(
            f"{name}-uai",
            resource_group_name=args.resource_group_name,
            location=args.location,
            resource_name_=args.identity_name,
            opts=child,
        )
        assignment = azure.authorization.RoleAssignment(
            f"{name}-acrpull",
            azure.authorization.RoleAssignmentArgs(
                scope=args.registry_id,
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=pulumi.Output.concat(
                    "/subscriptions/",
                    args.subscription_id,
                    "/providers/Microsoft.Authorization/roleDefinitions/",
                    ACR_PULL_ROLE,
                ),
            ),
            opts=child,
        )
        self.identity_id = identity.id
        self.principal_id = identity.principal_id
        self.client_id = identity.client_id
        self.role_assignment_id = assignment.id
        self.register_outputs({"identity_id": self.identity_id, "principal_id": self.principal_id})
