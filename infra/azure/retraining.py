"""Retraining on Azure: the trainer image as a Container Apps job in the stack's Container Apps
environment, on a cron schedule and started by the drift alert.

- one job: trigger type Schedule (the cron) when a schedule is set, else Manual; either can be
  started on demand ("for any job type, you can start a job execution on demand",
  https://learn.microsoft.com/en-us/azure/container-apps/jobs);
- the job runs as its own user-assigned identity: AcrPull on the platform registry only (the image
  is pulled by digest with it), Storage Blob Data Reader on the data container, Storage Blob Data
  Contributor on the package container (role assignments scoped to the containers, no account
  keys, no Azure Files). Container Apps mounts no Blob Storage, so the container runs
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

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from infra.azure.identity import PullIdentity, PullIdentityArgs
from infra.batch_config import bucket_and_prefix
from infra.retraining_config import TRAINER_PIPELINE, RetrainingSettings

STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
START_ACTION = "Microsoft.App/jobs/start/action"
STARTER_ROLE = "5d1c3e8a-7b2f-5c4e-9a61-0f3b2d4c6e8f"  # "Kaizen job starter" (infra/azure/deploy_role.py)
JOBS_API = "2024-03-01"
TRIGGER = "drift"


@dataclass(frozen=True)
class ContainerAppsRetrainingArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    job_name: str  # 2-32 lower-case letters, digits, '-'
    model: str
    version: str  # the deployed version: the champion
    settings: RetrainingSettings  # storage_account_id set (checked by StackConfig)
    image: pulumi.Input[str]  # settings.image, checked to be in the platform registry
    registry_server: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    environment_id: pulumi.Input[str]
    cpu: float = 2.0
    memory: str = "4Gi"


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
            azure.authorization.RoleAssignment(f"{name}-read-data", azure.authorization.RoleAssignmentArgs(
                scope=container_scope(s.storage_account_id, s.data), principal_id=identity.principal_id,
                principal_type="ServicePrincipal", role_definition_id=role(STORAGE_BLOB_DATA_READER)), opts=child),
            azure.authorization.RoleAssignment(f"{name}-write-packages", azure.authorization.RoleAssignmentArgs(
                scope=container_scope(s.storage_account_id, s.packages), principal_id=identity.principal_id,
                principal_type="ServicePrincipal", role_definition_id=role(STORAGE_BLOB_DATA_CONTRIBUTOR)),
                opts=child),
        ]
        env = {**trainer_env(s, args.model, args.version), "AZURE_CLIENT_ID": identity.client_id}
        scheduled = s.schedule is not None
        job = azure.app.Job(f"{name}-job", azure.app.JobArgs(
            resource_group_name=args.resource_group_name, location=args.location, job_name=args.job_name,
            environment_id=args.environment_id,
            identity=azure.app.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[identity.identity_id]),
            configuration=azure.app.JobConfigurationArgs(
                trigger_type="Schedule" if scheduled else "Manual",
                replica_timeout=s.timeout_minutes * 60, replica_retry_limit=0,
                schedule_trigger_config=azure.app.JobConfigurationScheduleTriggerConfigArgs(
                    cron_expression=" ".join(str(s.schedule).split()), parallelism=1, replica_completion_count=1)
                if scheduled else None,
                manual_trigger_config=None if scheduled else azure.app.JobConfigurationManualTriggerConfigArgs(
                    parallelism=1, replica_completion_count=1),
                registries=[azure.app.RegistryCredentialsArgs(server=args.registry_server,
                                                              identity=identity.identity_id)]),
            template=azure.app.JobTemplateArgs(containers=[azure.app.ContainerArgs(
                name="trainer", image=args.image, command=["kaizen"], args=["retrain-blob"],
                resources=azure.app.ContainerResourcesArgs(cpu=args.cpu, memory=args.memory),
                env=[azure.app.EnvironmentVarArgs(name=k, value=v) for k, v in sorted(env.items())])])),
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        self.drift_action_group_id = self._drift(name, args, job) if s.on_drift else None
        self.job_id = job.id
        self.identity_client_id = identity.client_id
        self.register_outputs({"job_id": self.job_id, "identity_client_id": self.identity_client_id})

    def _drift(self, name: str, args: ContainerAppsRetrainingArgs, job: azure.app.Job) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        starter = azure.managedidentity.UserAssignedIdentity(
            f"{name}-starter", resource_group_name=args.resource_group_name, location=args.location,
            resource_name_=f"{args.job_name}-start", opts=child)
        assignment = azure.authorization.RoleAssignment(f"{name}-start", azure.authorization.RoleAssignmentArgs(
            scope=job.id, principal_id=starter.principal_id, principal_type="ServicePrincipal",
            role_definition_id=pulumi.Output.concat("/subscriptions/", args.subscription_id,
                                                    "/providers/Microsoft.Authorization/roleDefinitions/",
                                                    STARTER_ROLE)), opts=child)
        workflow = azure.logic.Workflow(f"{name}-start", azure.logic.WorkflowArgs(
            resource_group_name=args.resource_group_name, location=args.location,
            workflow_name=f"{args.job_name}-on-drift", state="Enabled",
            identity=azure.logic.ManagedServiceIdentityArgs(
                type="UserAssigned", user_assigned_identities=[starter.id]),
            definition=job.id.apply(start_workflow),
            parameters={"startIdentity": azure.logic.WorkflowParameterArgs(type="String", value=starter.id)}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[assignment]))
        callback = azure.logic.list_workflow_trigger_callback_url_output(
            resource_group_name=args.resource_group_name, workflow_name=workflow.name, trigger_name=TRIGGER,
            opts=pulumi.InvokeOutputOptions(parent=self))
        group = azure.monitor.ActionGroup(
            f"{name}-drift", resource_group_name=args.resource_group_name, location="global", enabled=True,
            action_group_name=f"{args.job_name}-drift", group_short_name="kz-retrain",  # short name: 12 at most
            logic_app_receivers=[azure.monitor.LogicAppReceiverArgs(
                name="start-retraining", resource_id=workflow.id,
                # the trigger URL carries its SAS signature: a secret
                callback_url=pulumi.Output.secret(callback.value.apply(lambda v: v or "")),
                use_common_alert_schema=True)], opts=child)
        return group.id
