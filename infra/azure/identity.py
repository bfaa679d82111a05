"""User-assigned managed identity that pulls the model image (AcrPull on the registry only).

Role assignments take a while to propagate ("up to 10 minutes",
https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting#symptom---role-assignment-changes-are-not-being-detected):
`identity_id` resolves only after a pause following the assignment, so the first revision or
deployment does not start its image pull before AcrPull is effective.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure
import pulumiverse_time as time

from .registry import ACR_PULL_ROLE

RBAC_PROPAGATION = "90s"


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
        settle = time.Sleep(
            f"{name}-acrpull-propagation",
            time.SleepArgs(create_duration=RBAC_PROPAGATION, triggers={"assignment": assignment.id}),
            opts=child,
        )
        self.identity_id = pulumi.Output.all(identity.id, settle.id).apply(lambda v: str(v[0]))
        self.principal_id = identity.principal_id
        self.client_id = identity.client_id
        self.role_assignment_id = assignment.id
        self.register_outputs({"identity_id": self.identity_id, "principal_id": self.principal_id})
