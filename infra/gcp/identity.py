"""The service's own runtime service account, with read access to the model repository only."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class RuntimeIdentityArgs:
    project: str
    account_id: str
    repository_project: pulumi.Input[str]
    repository_location: pulumi.Input[str]
    repository_name: pulumi.Input[str]


class RuntimeIdentity(pulumi.ComponentResource):
    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(self, name: str, args: RuntimeIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:RuntimeIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = gcp.serviceaccount.Account(
            f"{name}-sa",
            gcp.serviceaccount.AccountArgs(
                project=args.project,
                account_id=args.account_id,
                display_name="Kaizen model runtime",
            ),
            opts=child,
        )
        member = account.email.apply(lambda e: f"serviceAccount:{e}")
        gcp.artifactregistry.RepositoryIamMember(
            f"{name}-reader",
            gcp.artifactregistry.RepositoryIamMemberArgs(
                project=args.repository_project,
                location=args.repository_location,
                repository=args.repository_name,
                role="roles/artifactregistry.reader",
                member=member,
            ),
            opts=child,
        )
        self.email = account.email
        self.member = member
        self.register_outputs({"email": self.email})
