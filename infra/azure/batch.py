"""Batch scoring on Azure: the model image as a Container Apps job in the stack's Container Apps
environment, on a cron schedule (trigger type Schedule) or started on demand (Manual:
`az containerapp job start`).

- the job runs the image's `batch-blob` entry point (model_packages/batch/blob_entry.py): Container
  Apps mounts no Blob Storage, so the inputs are downloaded with the job's managed identity, scored
  by the same `batch` code as everywhere, and the output uploaded under <output><execution>/;
  inputs and outputs must fit the replica's ephemeral storage;
- its own user-assigned identity: AcrPull on the platform registry only (the image is pulled by
  digest with it), Storage Blob Data Reader on the input container, Storage Blob Data Contributor on
  the output container (assignments scoped to the containers; no account keys, no Azure Files).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from infra.azure.identity import PullIdentity, PullIdentityArgs
from infra.azure.retraining import (
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    check_job_name,
    container_scope,
)
from infra.batch_config import BatchSettings, bucket_and_prefix


@dataclass(frozen=True)
class ContainerAppsBatchJobArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    job_name: str
    image: pulumi.Input[str]  # the stack's model image, by digest
    settings: BatchSettings  # storage_account_id set (checked by AzureSettings)
    registry_server: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    environment_id: pulumi.Input[str]
    cpu: float = 2.0
    memory: str = "4Gi"


def job_args(settings: BatchSettings) -> list[str]:
    args = ["batch-blob", *settings.inputs, "--chunk-rows", str(settings.chunk_rows)]
    return [*args, "--probabilities"] if settings.probabilities else args


def job_env(settings: BatchSettings) -> dict[str, str]:
    (in_container, in_prefix), (out_container, out_prefix) = (bucket_and_prefix(settings.input),
                                                              bucket_and_prefix(settings.output))
    return {"KAIZEN_BLOB_ACCOUNT_URL": f"https://{in_container.split('/', 1)[0]}.blob.core.windows.net",
            "KAIZEN_INPUT_CONTAINER": in_container.split("/", 1)[1], "KAIZEN_INPUT_PREFIX": in_prefix,
            "KAIZEN_OUTPUT_CONTAINER": out_container.split("/", 1)[1], "KAIZEN_OUTPUT_PREFIX": out_prefix}


class ContainerAppsBatchJob(pulumi.ComponentResource):
    job_id: pulumi.Output[str]

    def __init__(self, name: str, args: ContainerAppsBatchJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:ContainerAppsBatchJob", name, None, opts)
        s = args.settings
        if s.storage_account_id is None:
            raise ValueError("kaizen:azure.batch.storageAccountId is required")
        check_job_name(args.job_name)
        child = pulumi.ResourceOptions(parent=self)
        identity = PullIdentity(f"{name}-identity", PullIdentityArgs(
            resource_group_name=args.resource_group_name, location=args.location,
            identity_name=f"{args.job_name}-id", registry_id=args.registry_id,
            subscription_id=args.subscription_id), child)

        def role(guid: str) -> pulumi.Output[str]:
            return pulumi.Output.concat("/subscriptions/", args.subscription_id,
                                        "/providers/Microsoft.Authorization/roleDefinitions/", guid)

        grants = [
            azure.authorization.RoleAssignment(f"{name}-read-input", azure.authorization.RoleAssignmentArgs(
                scope=container_scope(s.storage_account_id, s.input), principal_id=identity.principal_id,
                principal_type="ServicePrincipal", role_definition_id=role(STORAGE_BLOB_DATA_READER)), opts=child),
            azure.authorization.RoleAssignment(f"{name}-write-output", azure.authorization.RoleAssignmentArgs(
                scope=container_scope(s.storage_account_id, s.output), principal_id=identity.principal_id,
                principal_type="ServicePrincipal", role_definition_id=role(STORAGE_BLOB_DATA_CONTRIBUTOR)),
                opts=child),
        ]
        env = {**job_env(s), "AZURE_CLIENT_ID": identity.client_id}
        scheduled = s.schedule is not None
        job = azure.app.Job(f"{name}-job", azure.app.JobArgs(
            resource_group_name=args.resource_group_name, location=args.location, job_name=args.job_name,
            environment_id=args.environment_id,
            identity=azure.app.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[identity.identity_id]),
            configuration=azure.app.JobConfigurationArgs(
                trigger_type="Schedule" if scheduled else "Manual",
                replica_timeout=s.timeout_minutes * 60, replica_retry_limit=1,
                schedule_trigger_config=azure.app.JobConfigurationScheduleTriggerConfigArgs(
                    cron_expression=" ".join(str(s.schedule).split()), parallelism=1, replica_completion_count=1)
                if scheduled else None,
                manual_trigger_config=None if scheduled else azure.app.JobConfigurationManualTriggerConfigArgs(
                    parallelism=1, replica_completion_count=1),
                registries=[azure.app.RegistryCredentialsArgs(server=args.registry_server,
                                                              identity=identity.identity_id)]),
            template=azure.app.JobTemplateArgs(containers=[azure.app.ContainerArgs(
                name="batch", image=args.image, args=job_args(s),
                resources=azure.app.ContainerResourcesArgs(cpu=args.cpu, memory=args.memory),
                env=[azure.app.EnvironmentVarArgs(name=k, value=v) for k, v in sorted(env.items())])])),
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        self.job_id = job.id
        self.register_outputs({"job_id": self.job_id})
