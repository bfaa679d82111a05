"""Azure ML managed online endpoint + deployment running the Kaizen image as a custom container.

Routes are the serving contract's (model_packages/serving/contract.py: live, ready and predict paths
on its port) and are also passed to the runtime through its KAIZEN_*_ROUTE variables. Deployments
are named after the image digest; the endpoint's traffic map comes from `mlTraffic` (Azure rejects
traffic to a deployment that does not exist yet, so a new digest is rolled out in two `pulumi up`
steps: deploy at 0 %, then shift).
`previousImage` keeps the old deployment alive during that window (blue/green).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure
import pulumiverse_time as time

from model_packages.serving import contract as c

from ..common.config import ml_deployment_name
from .identity import RBAC_PROPAGATION

STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # built-in role
# Online-endpoint log categories live on workspaces/onlineEndpoints, not on the workspace
# (https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-logs/microsoft-machinelearningservices-workspaces-onlineendpoints-logs).
ENDPOINT_LOG_CATEGORIES = ("AmlOnlineEndpointConsoleLog", "AmlOnlineEndpointTrafficLog", "AmlOnlineEndpointEventLog")


def deployment_name(digest: str) -> str:
    return ml_deployment_name(f"x@{digest}")


@dataclass(frozen=True)
class MlEndpointArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    base_name: str
    endpoint_name: str
    image: pulumi.Input[str]
    image_digest: str
    identity_id: pulumi.Input[str]
    identity_principal_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    tenant_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    app_insights_id: pulumi.Input[str]
    log_workspace_id: pulumi.Input[str]
    instance_type: str
    min_instances: int
    max_instances: int
    concurrency: int
    production: bool = False  # purge protection and 90-day soft delete on the Key Vault
    public: bool = False
    private_network: bool = False
    previous_image: str | None = None
    traffic: dict[str, int] | None = None
    protect: bool = False
    environment: dict[str, str] = field(default_factory=dict)


class MlOnlineEndpoint(pulumi.ComponentResource):
    endpoint_id: pulumi.Output[str]
    scoring_uri: pulumi.Output[str]
    deployment_names: list[str]

    def __init__(self, name: str, args: MlEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:MlOnlineEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        from ..common.naming import alnum_name

        storage = azure.storage.StorageAccount(
            f"{name}-storage",
            azure.storage.StorageAccountArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                account_name=alnum_name("kz", args.base_name, max_len=24),
                kind="StorageV2",
                sku=azure.storage.SkuArgs(name="Standard_LRS"),
                allow_blob_public_access=False,
                enable_https_traffic_only=True,
                minimum_tls_version="TLS1_2",
                allow_shared_key_access=False,
            ),
            opts=child,
        )
        tenant = args.tenant_id
        vault = azure.keyvault.Vault(
            f"{name}-vault",
            azure.keyvault.VaultArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                vault_name=alnum_name("kz", args.base_name, max_len=24),
                properties=azure.keyvault.VaultPropertiesArgs(
                    tenant_id=tenant,
                    sku=azure.keyvault.SkuArgs(family="A", name=azure.keyvault.SkuName.STANDARD),
                    enable_rbac_authorization=True,
                    enable_soft_delete=True,
                    # A soft-deleted vault keeps its name reserved: 7 days outside prod (the
                    # minimum), 90 in prod. Purge protection is fixed per stack kind, never
                    # toggled with deletionProtection (the API does not accept false).
                    soft_delete_retention_in_days=90 if args.production else 7,
                    enable_purge_protection=True if args.production else None,
                    # The workspace is a trusted Azure service: firewall closed, service bypass.
                    network_acls=azure.keyvault.NetworkRuleSetArgs(bypass="AzureServices", default_action="Deny"),
                ),
            ),
            opts=child,
        )
        workspace = azure.machinelearningservices.Workspace(
            f"{name}-workspace",
            azure.machinelearningservices.WorkspaceArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                workspace_name=f"{args.base_name}-mlw"[:33],
                identity=azure.machinelearningservices.ManagedServiceIdentityArgs(type="SystemAssigned"),
                storage_account=storage.id,
                key_vault=vault.id,
                application_insights=args.app_insights_id,
                container_registry=args.registry_id,
                # the storage account allows no shared keys
                system_datastores_auth_mode=azure.machinelearningservices.SystemDatastoresAuthMode.IDENTITY,
                public_network_access="Disabled" if args.private_network else "Enabled",
            ),
            opts=child,
        )
        endpoint_traffic = dict(args.traffic) if args.traffic else None
        endpoint = azure.machinelearningservices.OnlineEndpoint(
            f"{name}-endpoint",
            azure.machinelearningservices.OnlineEndpointArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                workspace_name=workspace.name,
                endpoint_name=args.endpoint_name,
                identity=azure.machinelearningservices.ManagedServiceIdentityArgs(
                    type="UserAssigned", user_assigned_identities=[args.identity_id]
                ),
                properties=azure.machinelearningservices.OnlineEndpointPropertiesArgs(
                    auth_mode="AADToken",  # always authenticated: Entra ID tokens, no keys
                    public_network_access="Disabled" if args.private_network else "Enabled",
                    traffic=endpoint_traffic,
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        azure.monitor.DiagnosticSetting(
            f"{name}-diagnostics",
            azure.monitor.DiagnosticSettingArgs(
                resource_uri=endpoint.id,
                name="kaizen-endpoint-logs",
                workspace_id=args.log_workspace_id,
                logs=[
                    azure.monitor.DiagnosticsLogSettingsArgs(category=c, enabled=True) for c in ENDPOINT_LOG_CATEGORIES
                ],
            ),
            opts=child,
        )
        # A user-assigned endpoint identity gets no automatic role assignments: it needs Storage
        # Blob Data Reader on the workspace storage itself
        # (https://learn.microsoft.com/en-us/azure/machine-learning/concept-endpoints-online-auth).
        blob_reader = azure.authorization.RoleAssignment(
            f"{name}-blob-reader",
            azure.authorization.RoleAssignmentArgs(
                scope=storage.id,
                principal_id=args.identity_principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=pulumi.Output.concat(
                    "/subscriptions/",
                    args.subscription_id,
                    "/providers/Microsoft.Authorization/roleDefinitions/",
                    STORAGE_BLOB_DATA_READER,
                ),
            ),
            opts=child,
        )
        blob_reader_settled = time.Sleep(
            f"{name}-blob-reader-propagation",
            time.SleepArgs(create_duration=RBAC_PROPAGATION, triggers={"assignment": blob_reader.id}),
            opts=child,
        )
        images: list[tuple[str, pulumi.Input[str]]] = [(args.image_digest, args.image)]
        if args.previous_image:
            images.append((args.previous_image.split("@", 1)[1], args.previous_image))
        names = []
        env_vars = {
            **args.environment,
            **c.routes_env(),
        }
        for digest, image in images:
            dname = deployment_name(digest)
            names.append(dname)
            environment = azure.machinelearningservices.EnvironmentVersion(
                f"{name}-env-{dname}",
                azure.machinelearningservices.EnvironmentVersionArgs(
                    resource_group_name=args.resource_group_name,
                    workspace_name=workspace.name,
                    name=f"kaizen-{args.base_name}"[:250],
                    version=dname,
                    properties=azure.machinelearningservices.EnvironmentVersionPropertiesArgs(
                        image=image,
                        os_type="Linux",
                        inference_config=azure.machinelearningservices.InferenceContainerPropertiesArgs(
                            liveness_route=azure.machinelearningservices.RouteArgs(path=c.LIVE_PATH, port=c.PORT),
                            readiness_route=azure.machinelearningservices.RouteArgs(path=c.READY_PATH, port=c.PORT),
                            scoring_route=azure.machinelearningservices.RouteArgs(path=c.PREDICT_PATH, port=c.PORT),
                        ),
                    ),
                ),
                # Azure ML assets are archive-only; deleting a version is refused. Versions are
                # immutable metadata: leave them in the workspace.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            deployment = azure.machinelearningservices.OnlineDeployment(
                f"{name}-deployment-{dname}",
                azure.machinelearningservices.OnlineDeploymentArgs(
                    resource_group_name=args.resource_group_name,
                    location=args.location,
                    workspace_name=workspace.name,
                    endpoint_name=endpoint.name,
                    deployment_name=dname,
                    sku=azure.machinelearningservices.SkuArgs(name="Default", capacity=args.min_instances),
                    properties=azure.machinelearningservices.ManagedOnlineDeploymentArgs(
                        endpoint_compute_type="Managed",
                        environment_id=environment.id,
                        instance_type=args.instance_type,
                        app_insights_enabled=True,
                        egress_public_network_access="Disabled" if args.private_network else "Enabled",
                        environment_variables=env_vars,
                        # Managed deployments accept only Default scale settings; autoscaling is
                        # an Azure Monitor autoscale setting on the deployment (below).
                        scale_settings=azure.machinelearningservices.DefaultScaleSettingsArgs(scale_type="Default"),
                        # Azure's default is 1 concurrent request per instance (429 beyond it).
                        request_settings=azure.machinelearningservices.OnlineRequestSettingsArgs(
                            max_concurrent_requests_per_instance=args.concurrency,
                        ),
                        liveness_probe=azure.machinelearningservices.ProbeSettingsArgs(
                            initial_delay="PT10S", period="PT10S", timeout="PT2S", failure_threshold=30
                        ),
                        readiness_probe=azure.machinelearningservices.ProbeSettingsArgs(
                            initial_delay="PT10S", period="PT10S", timeout="PT2S", failure_threshold=30
                        ),
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[blob_reader_settled]),
            )
            if args.max_instances > args.min_instances:
                _autoscale(f"{name}-autoscale-{dname}", args, deployment, dname, child)
        self.endpoint_id = endpoint.id
        self.scoring_uri = endpoint.properties.apply(lambda p: p.scoring_uri or "")
        self.deployment_names = names
        self.register_outputs({"endpoint_id": self.endpoint_id, "scoring_uri": self.scoring_uri})


def _autoscale(
    name: str,
    args: MlEndpointArgs,
    deployment: azure.machinelearningservices.OnlineDeployment,
    dname: str,
    opts: pulumi.ResourceOptions,
) -> azure.monitor.AutoscaleSetting:
    """CPU-based autoscale between min and max instances
    (https://learn.microsoft.com/en-us/azure/machine-learning/how-to-autoscale-endpoints)."""

    mon = azure.monitor

    def rule(
        direction: azure.monitor.ScaleDirection, operator: azure.monitor.ComparisonOperationType, threshold: float
    ) -> azure.monitor.ScaleRuleArgs:
        return azure.monitor.ScaleRuleArgs(
            metric_trigger=azure.monitor.MetricTriggerArgs(
                metric_name="CpuUtilizationPercentage",
                metric_resource_uri=deployment.id,
                time_grain="PT1M",
                statistic=mon.MetricStatisticType.AVERAGE,
                time_window="PT5M",
                time_aggregation=mon.TimeAggregationType.AVERAGE,
                operator=operator,
                threshold=threshold,
            ),
            scale_action=azure.monitor.ScaleActionArgs(
                direction=direction, type=mon.ScaleType.CHANGE_COUNT, value="1", cooldown="PT5M"
            ),
        )

    return azure.monitor.AutoscaleSetting(
        name,
        azure.monitor.AutoscaleSettingArgs(
            resource_group_name=args.resource_group_name,
            location=args.location,
            autoscale_setting_name=f"{args.base_name}-{dname}-autoscale",
            enabled=True,
            target_resource_uri=deployment.id,
            profiles=[
                azure.monitor.AutoscaleProfileArgs(
                    name="cpu",
                    capacity=azure.monitor.ScaleCapacityArgs(
                        minimum=str(args.min_instances),
                        maximum=str(args.max_instances),
                        default=str(args.min_instances),
                    ),
                    rules=[
                        rule(mon.ScaleDirection.INCREASE, mon.ComparisonOperationType.GREATER_THAN, 70.0),
                        rule(mon.ScaleDirection.DECREASE, mon.ComparisonOperationType.LESS_THAN, 25.0),
                    ],
                )
            ],
        ),
        opts=opts,
    )
