"""Azure Container Apps endpoint: internal ingress by default, revision per digest, canary."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

PORT = 8080


@dataclass(frozen=True)
class ContainerAppEndpointArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    app_name: str
    image: pulumi.Input[str]
    image_digest: str
    registry_server: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    workspace_customer_id: pulumi.Input[str]
    workspace_shared_key: pulumi.Input[str]
    app_insights_connection_string: pulumi.Input[str]
    cpu: float
    memory: str
    min_replicas: int
    max_replicas: int
    concurrency: int
    public: bool = False
    canary_percent: int = 0
    stable_revision: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    protect: bool = False


class ContainerAppEndpoint(pulumi.ComponentResource):
    app_id: pulumi.Output[str]
    fqdn: pulumi.Output[str]
    revision_suffix: str

    def __init__(self, name: str, args: ContainerAppEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:ContainerAppEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = azure.app.ManagedEnvironment(
            f"{name}-env",
            azure.app.ManagedEnvironmentArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                environment_name=f"{args.app_name}-env"[:60],
                app_logs_configuration=azure.app.AppLogsConfigurationArgs(
                    destination="log-analytics",
                    log_analytics_configuration=azure.app.LogAnalyticsConfigurationArgs(
                        customer_id=args.workspace_customer_id, shared_key=args.workspace_shared_key
                    ),
                ),
            ),
            opts=child,
        )
        suffix = f"d{args.image_digest.split(':', 1)[1][:12]}"
        if args.canary_percent and args.stable_revision:
            traffic = [
                azure.app.TrafficWeightArgs(latest_revision=True, weight=args.canary_percent, label="canary"),
                azure.app.TrafficWeightArgs(
                    revision_name=args.stable_revision, weight=100 - args.canary_percent, label="stable"
                ),
            ]
            mode = "Multiple"
        else:
            traffic = [azure.app.TrafficWeightArgs(latest_revision=True, weight=100)]
            mode = "Single"  # new revision takes traffic once ready; the old one then stops
        probe = azure.app.ContainerAppProbeHttpGetArgs
        app = azure.app.ContainerApp(
            f"{name}-app",
            azure.app.ContainerAppArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                container_app_name=args.app_name,
                environment_id=env.id,
                identity=azure.app.ManagedServiceIdentityArgs(
                    type="UserAssigned",
                    user_assigned_identities=[args.identity_id],
                ),
                configuration=azure.app.ConfigurationArgs(
                    active_revisions_mode=mode,
                    registries=[
                        azure.app.RegistryCredentialsArgs(server=args.registry_server, identity=args.identity_id)
                    ],
                    ingress=azure.app.IngressArgs(
                        external=args.public,
                        target_port=PORT,
                        transport="http",
                        allow_insecure=False,
                        traffic=traffic,
                    ),
                ),
                template=azure.app.TemplateArgs(
                    revision_suffix=suffix,
                    containers=[
                        azure.app.ContainerArgs(
                            name="model",
                            image=args.image,
                            resources=azure.app.ContainerResourcesArgs(cpu=args.cpu, memory=args.memory),
                            env=[
                                azure.app.EnvironmentVarArgs(name=k, value=v)
                                for k, v in sorted(
                                    {
                                        **args.environment,
                                        "PORT": str(PORT),
                                    }.items()
                                )
                            ]
                            + [
                                azure.app.EnvironmentVarArgs(
                                    name="APPLICATIONINSIGHTS_CONNECTION_STRING",
                                    value=args.app_insights_connection_string,
                                )
                            ],
                            probes=[
                                azure.app.ContainerAppProbeArgs(
                                    type="Liveness",
                                    http_get=probe(path="/health/live", port=PORT),
                                    period_seconds=15,
                                    failure_threshold=3,
                                ),
                                azure.app.ContainerAppProbeArgs(
                                    type="Readiness",
                                    http_get=probe(path="/health/ready", port=PORT),
                                    period_seconds=5,
                                    failure_threshold=3,
                                ),
                                azure.app.ContainerAppProbeArgs(
                                    type="Startup",
                                    http_get=probe(path="/health/ready", port=PORT),
                                    period_seconds=5,
                                    failure_threshold=48,
                                ),
                            ],
                        )
                    ],
                    scale=azure.app.ScaleArgs(
                        min_replicas=args.min_replicas,
                        max_replicas=args.max_replicas,
                        rules=[
                            azure.app.ScaleRuleArgs(
                                name="http-concurrency",
                                http=azure.app.HttpScaleRuleArgs(
                                    metadata={"concurrentRequests": str(args.concurrency)}
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.app_id = app.id
        self.fqdn = app.latest_revision_fqdn
        self.revision_suffix = suffix
        self.register_outputs({"app_id": self.app_id, "fqdn": self.fqdn})
