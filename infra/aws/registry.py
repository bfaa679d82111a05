"""ECR repository for model images (lives in the long-lived `<cloud>-platform` stack)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# Pull actions the execution role gets on exactly one repository (with ecr:GetAuthorizationToken,
# which AWS only accepts on "*"; infra/aws/identity.py). SageMaker pulls with the execution role,
# so the repository needs no resource policy.
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


@dataclass(frozen=True)
class EcrRegistryArgs:
    repository_name: str
    keep_images: int
    protect: bool = True


class EcrRegistry(pulumi.ComponentResource):
    """KMS-encrypted, immutable-tag, scan-on-push ECR repository with a lifecycle policy."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    repository_name: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: EcrRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:aws:EcrRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)

        key = aws.kms.Key(
            f"{name}-key",
            aws.kms.KeyArgs(
                description=f"ECR encryption for {args.repository_name}",
                enable_key_rotation=True,
                deletion_window_in_days=30,
            ),
            opts=kept,
        )
        repo = aws.ecr.Repository(
            f"{name}-repo",
            aws.ecr.RepositoryArgs(
                name=args.repository_name,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=key.arn)
                ],
                force_delete=False,
            ),
            opts=kept,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            aws.ecr.LifecyclePolicyArgs(
                repository=repo.name,
                policy=json.dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": f"keep the last {args.keep_images} model images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": args.keep_images,
                                },
                                "action": {"type": "expire"},
                            }
                        ]
                    }
                ),
            ),
            opts=child,
        )
        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.repository_name = repo.name
        self.kms_key_arn = key.arn
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_arn": self.repository_arn,
                "repository_name": self.repository_name,
                "kms_key_arn": self.kms_key_arn,
            }
        )
