"""The one Container Apps job shape batch scoring (batch.py) and retraining (retraining.py) share.

A job in the stack's Container Apps environment, on a cron (trigger type Schedule) or started on
demand (Manual; either type can be started on demand), run as its own user-assigned identity:
AcrPull on the platform registry only (the image is pulled by digest with it) and one role
assignment per blob container it reads or writes (scoped to the container; no account keys, no
Azure Files: Container Apps mounts no Blob Storage, so the container downloads and uploads itself,
told its identity by AZURE_CLIENT_ID).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from ..batch_config import bucket_and_prefix
from .identity import PullIdentity, PullIdentityArgs

STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

_JOB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")


def check_job_name(name: str) -> None:
    """Container Apps job names: 2-32 lower-case letters, digits and '-', starting with a letter, no '--'."""
    if not _JOB_NAME.match(name) or "--" in name:
        raise ValueError(f"Container Apps job name {name!r}: 2-32 lower-case letters, digits and single '-', "
                         "starting with a letter")


def container_scope(storage_account_id: str, location: str) -> str:
    """The ARM id of the blob container of an https://<account>.blob.core.windows.net/<container>/ URL."""
    account_container, _ = bucket_and_prefix(location)
    container = account_container.split("/", 1)[1]
    return f"{storage_account_id}/blobServices/default/containers/{container}"


def role_definition(subscription_id: pulumi.Input[str], guid: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("/subscriptions/", subscription_id,
                                "/providers/Microsoft.Authorization/roleDefinitions/", guid)


@dataclass(frozen=True)
class BlobGrant:
    """The job identity's role on one blob container: resource `<component>-<key>`."""

    key: str
    location: str  # https://<account>.blob.core.windows.net/<container>/...
    role: str  # STORAGE_BLOB_DATA_READER | STORAGE_BLOB_DATA_CONTRIBUTOR


@dataclass(frozen=True)
class JobEnvironment:
    """Where a stack's jobs run and pull from: its Container Apps environment, the platform registry."""

    resource_group_name: pulumi.Input[str]
    location: str
    environment_id: pulumi.Input[str]
    registry_server: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]


@dataclass(frozen=True)
class ContainerAppsJobArgs:
    where: JobEnvironment
    job_name: str  # checked by check_job_name
    storage_account_id: str
    grants: tuple[BlobGrant, ...]
    container: str  # the container's name
    image: pulumi.Input[str]
    args: list[str]
    env: dict[str, str]
    schedule: str | None  # five-field cron (UTC); None: Manual
    timeout_minutes: int
    retry_limit: int
    cpu: float
    memory: str
    command: list[str] | None = None  # None: the image's entry point


@dataclass(frozen=True)
class ContainerAppsJob:
    job: azure.app.Job
    identity: PullIdentity


def container_apps_job(name: str, args: ContainerAppsJobArgs, parent: pulumi.Resource) -> ContainerAppsJob:
    """Declare, under `parent`, the job's identity (`<name>-identity`), grants and job (`<name>-job`)."""
    check_job_name(args.job_name)
    child = pulumi.ResourceOptions(parent=parent)
    where = args.where
    identity = PullIdentity(f"{name}-identity", PullIdentityArgs(
        resource_group_name=where.resource_group_name, location=where.location,
        identity_name=f"{args.job_name}-id", registry_id=where.registry_id,
        subscription_id=where.subscription_id), child)
    grants = [
        azure.authorization.RoleAssignment(f"{name}-{grant.key}", azure.authorization.RoleAssignmentArgs(
            scope=container_scope(args.storage_account_id, grant.location), principal_id=identity.principal_id,
            principal_type="ServicePrincipal", role_definition_id=role_definition(where.subscription_id, grant.role)),
            opts=child)
        for grant in args.grants
    ]
    env: dict[str, pulumi.Input[str]] = {**args.env, "AZURE_CLIENT_ID": identity.client_id}
    scheduled = args.schedule is not None
    job = azure.app.Job(f"{name}-job", azure.app.JobArgs(
        resource_group_name=where.resource_group_name, location=where.location, job_name=args.job_name,
        environment_id=where.environment_id,
        identity=azure.app.ManagedServiceIdentityArgs(
            type="UserAssigned", user_assigned_identities=[identity.identity_id]),
        configuration=azure.app.JobConfigurationArgs(
            trigger_type="Schedule" if scheduled else "Manual",
            replica_timeout=args.timeout_minutes * 60, replica_retry_limit=args.retry_limit,
            schedule_trigger_config=azure.app.JobConfigurationScheduleTriggerConfigArgs(
                cron_expression=" ".join(str(args.schedule).split()), parallelism=1, replica_completion_count=1)
            if scheduled else None,
            manual_trigger_config=None if scheduled else azure.app.JobConfigurationManualTriggerConfigArgs(
                parallelism=1, replica_completion_count=1),
            registries=[azure.app.RegistryCredentialsArgs(server=where.registry_server,
                                                          identity=identity.identity_id)]),
        template=azure.app.JobTemplateArgs(containers=[azure.app.ContainerArgs(
            name=args.container, image=args.image, command=args.command, args=args.args,
            resources=azure.app.ContainerResourcesArgs(cpu=args.cpu, memory=args.memory),
            env=[azure.app.EnvironmentVarArgs(name=k, value=v) for k, v in sorted(env.items())])])),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=grants))
    return ContainerAppsJob(job, identity)
