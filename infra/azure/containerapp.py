"""Azure Container Apps endpoint: internal ingress by default, a new revision per template change, canary.

Revision names are left to Azure (`<app>--<random>`): a suffix derived from the digest made any
template change without a new image, and every rollback to an earlier image, a conflict
("revision with suffix already exists"). Roll back by setting the earlier image again (a new
revision) or, in Multiple mode, by traffic to the existing revision (`stableRevision`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native as azure

from model_packages.serving import contract as c


@dataclass(frozen=True)
class ContainerAppEndpointArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    app_name: str
    image: pulumi.Input[str]
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
    infrastructure_subnet_id: str | None = None  # VNet-integrated environment (internal load balancer)
    protect: bool = False


class ContainerAppEndpoint(pulumi.ComponentResource):
    app_id: pulumi.Output[str]
    environment_id: pulumi.Output[str]
    fqdn: pulumi.Output[str]
    latest_revision: pulumi.Output[str]

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
                # Without a VNet, internal ingress is reachable only from inside this environment
                # (https://learn.microsoft.com/en-us/azure/container-apps/ingress-overview).
                vnet_configuration=azure.app.VnetConfigurationArgs(
                    infrastructure_subnet_id=args.infrastructure_subnet_id, internal=not args.public
                )
                if args.infrastructure_subnet_id
                else None,
            ),
            opts=child,
        )
        if not args.public and not args.infrastructure_subnet_id:
            pulumi.log.warn(
                f"{args.app_name}: internal ingress without infrastructureSubnetId is reachable only from apps "
                "in the same Container Apps environment; set kaizen:azure.infrastructureSubnetId to reach it "
                "from your VNet"
            )
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
                    # Kept out of plain env vars: referenced by secretRef.
                    secrets=[
                        azure.app.SecretArgs(
                            name="appinsights-connection-string", value=args.app_insights_connection_string
                        )
                    ],
                    registries=[
                        azure.app.RegistryCredentialsArgs(server=args.registry_server, identity=args.identity_id)
                    ],
                    ingress=azure.app.IngressArgs(
                        external=args.public,
                        target_port=c.PORT,
                        transport="http",
                        allow_insecure=False,
                        traffic=traffic,
                    ),
                ),
                template=azure.app.TemplateArgs(
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
                                        "PORT": str(c.PORT),  # the platform variable the runtime reads first
                                    }.items()
                                )
                            ]
                            + [
                                azure.app.EnvironmentVarArgs(
                                    name="APPLICATIONINSIGHTS_CONNECTION_STRING",
                                    secret_ref="appinsights-connection-string",
                                )
                            ],
                            probes=[
                                azure.app.ContainerAppProbeArgs(
                                    type="Liveness",
                                    http_get=probe(path=c.LIVE_PATH, port=c.PORT),
                                    period_seconds=15,
                                    failure_threshold=3,
                                ),
                                azure.app.ContainerAppProbeArgs(
                                    type="Readiness",
                                    http_get=probe(path=c.READY_PATH, port=c.PORT),
                                    period_seconds=5,
                                    failure_threshold=3,
                                ),
                                # 10 s + 10 x 23 s = 240 s to start. failureThreshold 10 is the
                                # strictest documented limit (REST spec), so it holds whichever
                                # limit the service applies (infra/azure/rules.py).
                                azure.app.ContainerAppProbeArgs(
                                    type="Startup",
                                    http_get=probe(path=c.READY_PATH, port=c.PORT),
                                    initial_delay_seconds=10,
                                    period_seconds=23,
                                    failure_threshold=10,
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
        self.environment_id = env.id
        # The app's FQDN honours the traffic split; latest_revision_fqdn would bypass the canary.
        self.fqdn = app.configuration.apply(lambda c: (c.ingress.fqdn or "") if c and c.ingress else "")
        self.latest_revision = app.latest_revision_name
        self.register_outputs({"app_id": self.app_id, "fqdn": self.fqdn, "latest_revision": self.latest_revision})
