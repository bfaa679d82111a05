"""Artifact Registry DOCKER repository (lives in the long-lived `gcp-platform` stack)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class ArtifactRegistryArgs:
    project: str
    location: str
    repository_id: str
    keep_images: int
    protect: bool = True


class ArtifactRegistry(pulumi.ComponentResource):
    repository_id: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    repository_url: pulumi.Output[str]

    def __init__(self, name: str, args: ArtifactRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:ArtifactRegistry", name, None, opts)
        repo = gcp.artifactregistry.Repository(
            f"{name}-repo",
            gcp.artifactregistry.RepositoryArgs(
                project=args.project,
                location=args.location,
                repository_id=args.repository_id,
                format="DOCKER",
                description="Kaizen model images (digest-pinned)",
                docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
                cleanup_policy_dry_run=False,
                cleanup_policies=[
                    gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                        id="keep-recent",
                        action="KEEP",
                        most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                            keep_count=args.keep_images
                        ),
                    ),
                    gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                        id="delete-old",
                        action="DELETE",
                        condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                            tag_state="ANY", older_than="2592000s"
                        ),
                    ),
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.repository_id = repo.id
        self.repository_name = repo.repository_id
        self.repository_url = pulumi.Output.concat(
            args.location, "-docker.pkg.dev/", args.project, "/", repo.repository_id
        )
        self.register_outputs(
            {
                "repository_id": self.repository_id,
                "repository_name": self.repository_name,
                "repository_url": self.repository_url,
            }
        )
