"""Retraining on Azure: the trainer image as a Container Apps job in the stack's Container Apps
environment, on a cron schedule and started by the drift alert.

- one job: trigger type Schedule (the cron) when a schedule is set, else Manual; either can be
  started on demand ("for any job type, you can start a job execution on demand",
  https://learn.microsoft.com/en-us/azure/container-apps/jobs);
- the job runs as its own user-assigned identity (infra/azure/jobs.py): AcrPull on the platform
  registry, Storage Blob Data Reader on the data container, Storage Blob Data Contributor on the
  package container. Container Apps mounts no Blob Storage, so the container runs
  `kaizen retrain-blob` (model_packages/retrain/blob.py): it downloads the data blob and the
  champion with that identity, runs `kaizen retrain`, and uploads the result under candidates/;
- drift: a dedicated action group, attached to the drift alert only, whose one receiver is a Logic
  App. On a *Fired* alert the Logic App POSTs the ARM `start` operation of this job, authenticated
  as a second user-assigned identity holding, on this job only, the custom role "Kaizen job starter"
  whose single action is `Microsoft.App/jobs/start/action`. That role is created once per
  subscription with the deployer role (`python -m infra.azure.deploy_role`, STARTER_ROLE), so the
  deploying identity needs no roleDefinitions/write and its assignment condition can name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from ..batch_config import bucket_and_prefix
from ..retraining_config import TRAINER_PIPELINE, RetrainingSettings
from .jobs import (
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    BlobGrant,
    ContainerAppsJobArgs,
    JobEnvironment,
    container_apps_job,
    role_definition,
)

START_ACTION = "Microsoft.App/jobs/start/action"
STARTER_ROLE = "5d1c3e8a-7b2f-5c4e-9a61-0f3b2d4c6e8f"  # "Kaizen job starter" (infra/azure/deploy_role.py)
JOBS_API = "2024-03-01"
TRIGGER = "drift"


@dataclass(frozen=True)
class ContainerAppsRetrainingArgs:
    where: JobEnvironment  # the stack's Container Apps environment and platform registry
    job_name: str  # 2-32 lower-case letters, digits, '-'
    model: str
    version: str  # the deployed version: the champion
    settings: RetrainingSettings  # storage_account_id set (checked by StackConfig)
    image: pulumi.Input[str]  # settings.image, checked to be in the platform registry
    cpu: float = 2.0
    memory: str = "4Gi"


def trainer_env(settings: RetrainingSettings, model: str, version: str) -> dict[str, str]:
    """What `kaizen retrain-blob` reads: where the data, the champion and the candidates are."""
    data_container, data_blob = bucket_and_prefix(settings.data)
    store, champion = settings.champion(model, version)
    _, candidates = settings.candidates()
    account = data_container.split("/", 1)[0]
    return {
        "KAIZEN_BLOB_ACCOUNT_URL": f"https://{account}.blob.core.windows.net",
        "KAIZEN_DATA_CONTAINER": data_container.split("/", 1)[1],
        "KAIZEN_DATA_BLOB": data_blob.rstrip("/"),
        "KAIZEN_PACKAGES_CONTAINER": store.split("/", 1)[1],
        "KAIZEN_CHAMPION_PREFIX": champion,
        "KAIZEN_CANDIDATES_PREFIX": candidates,
        "KAIZEN_PIPELINE": TRAINER_PIPELINE,
    }


def start_workflow(job_id: str) -> dict[str, Any]:
    """Logic App definition: on a Fired common-schema alert, POST <job>/start as the start identity."""
    fired = "@equals(triggerBody()?['data']?['essentials']?['monitorCondition'], 'Fired')"
    return {
        "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/"
                   "workflowdefinition.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"startIdentity": {"type": "String"}},
        "triggers": {TRIGGER: {"type": "Request", "kind": "Http", "inputs": {"method": "POST"}}},
        "actions": {"fired": {
            "type": "If", "runAfter": {}, "expression": fired,
            "actions": {"start_job": {
                "type": "Http", "runAfter": {},
                "inputs": {"method": "POST",
                           "uri": f"https://management.azure.com{job_id}/start?api-version={JOBS_API}",
                           "authentication": {"type": "ManagedServiceIdentity",
                                              "identity": "@parameters('startIdentity')",
                                              "audience": "https://management.azure.com/"}}}},
            "else": {"actions": {}}}},
        "outputs": {},
    }


class ContainerAppsRetraining(pulumi.ComponentResource):
    job_id: pulumi.Output[str]
    identity_client_id: pulumi.Output[str]
    drift_action_group_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: ContainerAppsRetrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:ContainerAppsRetraining", name, None, opts)
        s = args.settings
        if s.storage_account_id is None:
            raise ValueError("kaizen:retraining.storageAccountId is required on Azure")
        made = container_apps_job(name, ContainerAppsJobArgs(
            where=args.where, job_name=args.job_name, storage_account_id=s.storage_account_id,
            grants=(BlobGrant("read-data", s.data, STORAGE_BLOB_DATA_READER),
                    BlobGrant("write-packages", s.packages, STORAGE_BLOB_DATA_CONTRIBUTOR)),
            container="trainer", image=args.image, command=["kaizen"], args=["retrain-blob"],
            env=trainer_env(s, args.model, args.version), schedule=s.schedule, timeout_minutes=s.timeout_minutes,
            retry_limit=0, cpu=args.cpu, memory=args.memory), self)
        job, identity = made.job, made.identity
        self.drift_action_group_id = self._drift(name, args, job) if s.on_drift else None
        self.job_id = job.id
        self.identity_client_id = identity.client_id
        self.register_outputs({"job_id": self.job_id, "identity_client_id": self.identity_client_id})

    def _drift(self, name: str, args: ContainerAppsRetrainingArgs, job: azure.app.Job) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        starter = azure.managedidentity.UserAssignedIdentity(
            f"{name}-starter", resource_group_name=args.where.resource_group_name, location=args.where.location,
            resource_name_=f"{args.job_name}-start", opts=child)
        assignment = azure.authorization.RoleAssignment(f"{name}-start", azure.authorization.RoleAssignmentArgs(
            scope=job.id, principal_id=starter.principal_id, principal_type="ServicePrincipal",
            role_definition_id=role_definition(args.where.subscription_id, STARTER_ROLE)), opts=child)
        workflow = azure.logic.Workflow(f"{name}-start", azure.logic.WorkflowArgs(
            resource_group_name=args.where.resource_group_name, location=args.where.location,
            workflow_name=f"{args.job_name}-on-drift", state="Enabled",
            identity=azure.logic.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[starter.id]),
            definition=job.id.apply(start_workflow),
            parameters={"startIdentity": azure.logic.WorkflowParameterArgs(type="String", value=starter.id)}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[assignment]))
        callback = azure.logic.list_workflow_trigger_callback_url_output(
            resource_group_name=args.where.resource_group_name, workflow_name=workflow.name, trigger_name=TRIGGER,
            opts=pulumi.InvokeOutputOptions(parent=self))
        group = azure.monitor.ActionGroup(
            f"{name}-drift", resource_group_name=args.where.resource_group_name, location="global", enabled=True,
            action_group_name=f"{args.job_name}-drift", group_short_name="kz-retrain",  # short name: 12 at most
            logic_app_receivers=[azure.monitor.LogicAppReceiverArgs(
                name="start-retraining", resource_id=workflow.id,
                # the trigger URL carries its SAS signature: a secret
                callback_url=pulumi.Output.secret(callback.value.apply(lambda v: v or "")),
                use_common_alert_schema=True)], opts=child)
        return group.id
