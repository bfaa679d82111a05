"""Cloud Run v2 service for the model image: private by default, a revision per template change.

Revision names are Cloud Run's: a fixed name (even a hash of the settings) is rejected once a
revision of that name exists (409, hashicorp/terraform-provider-google#13410), which made every
rollback to an earlier digest fail. Roll back by setting the earlier image (a new revision) or
by traffic to the existing revision (`stableRevision`, from the `revision` output).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from model_packages.serving import contract as c

INGRESS = {
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "all": "INGRESS_TRAFFIC_ALL",
}
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@dataclass(frozen=True)
class CloudRunServiceArgs:
    project: str
    region: str
    service_name: str
    image: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    min_instances: int
    max_instances: int
    concurrency: int
    cpu: str
    memory: str
    ingress: str = "internal"
    invokers: list[str] = field(default_factory=list)
    canary_percent: int = 0
    stable_revision: str | None = None
    deletion_protection: bool = False
    environment: dict[str, str] = field(default_factory=dict)


class CloudRunService(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    uri: pulumi.Output[str]
    revision: pulumi.Output[str]

    def __init__(self, name: str, args: CloudRunServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:CloudRunService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.canary_percent and args.stable_revision:
            traffics = [
                gcp.cloudrunv2.ServiceTrafficArgs(type=LATEST, percent=args.canary_percent),
                gcp.cloudrunv2.ServiceTrafficArgs(
                    type=REVISION, revision=args.stable_revision, percent=100 - args.canary_percent
                ),
            ]
        else:
            traffics = [gcp.cloudrunv2.ServiceTrafficArgs(type=LATEST, percent=100)]
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            gcp.cloudrunv2.ServiceArgs(
                project=args.project,
                location=args.region,
                name=args.service_name,
                ingress=INGRESS[args.ingress],
                deletion_protection=args.deletion_protection,
                invoker_iam_disabled=False,
                template=gcp.cloudrunv2.ServiceTemplateArgs(
                    service_account=args.service_account_email,
                    max_instance_request_concurrency=args.concurrency,
                    scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                        min_instance_count=args.min_instances, max_instance_count=args.max_instances
                    ),
                    containers=[
                        gcp.cloudrunv2.ServiceTemplateContainerArgs(
                            name="model",
                            image=args.image,
                            ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=c.PORT, name="http1"),
                            resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                                limits={"cpu": args.cpu, "memory": args.memory},
                                # Request-based CPU starves the runtime's drift/log timers between
                                # requests; with warm instances keep CPU always allocated.
                                cpu_idle=args.min_instances == 0,
                                startup_cpu_boost=True,
                            ),
                            envs=[
                                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=k, value=v)
                                for k, v in sorted(args.environment.items())
                            ],
                            startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                                http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                    path=c.READY_PATH, port=c.PORT
                                ),
                                period_seconds=5,
                                failure_threshold=48,
                                timeout_seconds=2,
                            ),
                            liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                                http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                                    path=c.LIVE_PATH, port=c.PORT
                                ),
                                period_seconds=15,
                                failure_threshold=3,
                                timeout_seconds=2,
                            ),
                        )
                    ],
                ),
                traffics=traffics,
            ),
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection),
        )
        for i, member in enumerate(args.invokers):
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{i}",
                gcp.cloudrunv2.ServiceIamMemberArgs(
                    project=args.project,
                    location=args.region,
                    name=service.name,
                    role="roles/run.invoker",
                    member=member,
                ),
                opts=child,
            )
        self.service_name = service.name
        self.uri = service.uri
        self.revision = service.latest_ready_revision
        self.register_outputs({"service_name": self.service_name, "uri": self.uri})
