"""The service's own runtime service account, and read access to the model repository for the pull.

Cloud Run pulls the image with its *service agent*
(service-<project number>@serverless-robot-prod.iam.gserviceaccount.com), not with the runtime
service account; a repository in another project must grant the agent Artifact Registry Reader
(https://cloud.google.com/artifact-registry/docs/integrate-cloud-run#permissions).
"""

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
    project_number: pulumi.Input[str]


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
        agent = pulumi.Output.from_input(args.project_number).apply(
            lambda n: f"serviceAccount:service-{n}@serverless-robot-prod.iam.gserviceaccount.com"
        )
        gcp.artifactregistry.RepositoryIamMember(
            f"{name}-agent-reader",
            gcp.artifactregistry.RepositoryIamMemberArgs(
                project=args.repository_project,
                location=args.repository_location,
                repository=args.repository_name,
                role="roles/artifactregistry.reader",
                member=agent,
            ),
            opts=child,
        )
        self.email = account.email
        self.member = member
        self.register_outputs({"email": self.email})
