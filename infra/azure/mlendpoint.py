"""Azure ML managed online endpoint + deployment running the Kaizen image as a custom container.

Routes match the runtime (`/health/live`, `/health/ready`, `/predict` on 8080) and are also
passed to it through KAIZEN_*_ROUTE. Deployments are named after the image digest; the
endpoint's traffic map comes from `mlTraffic` (Azure rejects traffic to a deployment that does
not exist yet, so a new digest is rolled out in two `pulumi up` steps: deploy at 0 %, then shift).
`previousImage` keeps the old deployment alive during that window (blue/green).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

PORT = 8080
LIVENESS, READINESS, SCORING = "/health/live", "/health/ready", "/predict"


def deployment_name(digest: str) -> str:
    return f"d{digest.split(':', 1)[1][:12]}"


@dataclass(frozen=True)
class MlEndpointArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    base_name: str
    endpoint_name: str
    image: pulumi.Input[str]
    image_digest: str
    identity_id: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    app_insights_id: pulumi.Input[str]
    log_workspace_id: pulumi.Input[str]
    instance_type: str
    min_instances: int
    max_instances: int
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
        from infra.common.naming import alnum_name

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
        tenant = azure.authorization.get_client_config_output().tenant_id
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
                    enable_purge_protection=True if args.protect else None,
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
                system_datastores_auth_mode="identity",  # the storage account allows no shared keys
                public_network_access="Disabled" if args.private_network else "Enabled",
            ),
            opts=child,
        )
        azure.monitor.DiagnosticSetting(
            f"{name}-diagnostics",
            azure.monitor.DiagnosticSettingArgs(
                resource_uri=workspace.id,
                name="kaizen-endpoint-logs",
                workspace_id=args.log_workspace_id,
                logs=[
                    azure.monitor.DiagnosticsLogSettingsArgs(category="AmlOnlineEndpointConsoleLog", enabled=True),
                    azure.monitor.DiagnosticsLogSettingsArgs(category="AmlOnlineEndpointTrafficLog", enabled=True),
                ],
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
        images: list[tuple[str, pulumi.Input[str]]] = [(args.image_digest, args.image)]
        if args.previous_image:
            images.append((args.previous_image.split("@", 1)[1], args.previous_image))
        names = []
        env_vars = {
            **args.environment,
            "KAIZEN_LIVENESS_ROUTE": LIVENESS,
            "KAIZEN_READINESS_ROUTE": READINESS,
            "KAIZEN_SCORING_ROUTE": SCORING,
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
                            liveness_route=azure.machinelearningservices.RouteArgs(path=LIVENESS, port=PORT),
                            readiness_route=azure.machinelearningservices.RouteArgs(path=READINESS, port=PORT),
                            scoring_route=azure.machinelearningservices.RouteArgs(path=SCORING, port=PORT),
                        ),
                    ),
                ),
                opts=child,
            )
            azure.machinelearningservices.OnlineDeployment(
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
                        scale_settings=azure.machinelearningservices.TargetUtilizationScaleSettingsArgs(
                            scale_type="TargetUtilization",
                            min_instances=args.min_instances,
                            max_instances=args.max_instances,
                            target_utilization_percentage=70,
                            polling_interval="PT1M",
                        ),
                        liveness_probe=azure.machinelearningservices.ProbeSettingsArgs(
                            initial_delay="PT10S", period="PT10S", timeout="PT2S", failure_threshold=30
                        ),
                        readiness_probe=azure.machinelearningservices.ProbeSettingsArgs(
                            initial_delay="PT10S", period="PT10S", timeout="PT2S", failure_threshold=30
                        ),
                    ),
                ),
                opts=child,
            )
        self.endpoint_id = endpoint.id
        self.scoring_uri = endpoint.properties.apply(lambda p: p.scoring_uri or "")
        self.deployment_names = names
        self.register_outputs({"endpoint_id": self.endpoint_id, "scoring_uri": self.scoring_uri})
