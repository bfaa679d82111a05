"""The GCP stack: platform (Artifact Registry) or serving (Cloud Run + monitoring + identity)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from model_packages import stack_outputs as out

from ..common.config import GcpSettings, StackConfig
from ..common.naming import physical_name
from ..common.platform import platform_image, platform_stack
from ..common.runtime import runtime_env
from .identity import RuntimeIdentity, RuntimeIdentityArgs
from .jobs import RegistryAccess
from .monitoring import EndpointMonitoring, EndpointMonitoringArgs
from .registry import ArtifactRegistry, ArtifactRegistryArgs
from .service import CloudRunService, CloudRunServiceArgs


def service_name(cfg: StackConfig) -> str:
    return physical_name("kaizen", cfg.model_ref.name, pulumi.get_stack(), max_len=49)


def deploy(cfg: StackConfig) -> dict[str, Any]:
    settings = cfg.gcp
    assert settings is not None
    provider = gcp.Provider("gcp", gcp.ProviderArgs(project=settings.project, region=settings.region))
    opts = pulumi.ResourceOptions(providers=[provider])
    if cfg.stack_kind == "platform":
        registry = ArtifactRegistry(
            "registry",
            ArtifactRegistryArgs(
                project=settings.project,
                location=settings.region,
                repository_id="kaizen",
                keep_images=settings.registry_keep_images,
                protect=cfg.protect,
            ),
            opts=opts,
        )
        outputs: dict[str, Any] = {
            "repositoryId": registry.repository_id,
            "repositoryName": registry.repository_name,
            "repositoryLocation": settings.region,
            "repositoryProject": settings.project,
            "repositoryUrl": registry.repository_url,
        }
        if cfg.github is not None:
            from .github_trust import GithubDeployTrust, GithubDeployTrustArgs

            trust = GithubDeployTrust(
                "github",
                GithubDeployTrustArgs(project=settings.project, repository=cfg.github.repository,
                                      environments=cfg.github.environments),
                opts=opts,
            )
            outputs["workloadIdentityProvider"] = trust.provider_name
            outputs["deployServiceAccount"] = trust.service_account
        return outputs
    return _serving(cfg, settings, opts, provider)


def _serving(
    cfg: StackConfig, settings: GcpSettings, opts: pulumi.ResourceOptions, provider: gcp.Provider
) -> dict[str, Any]:
    platform = platform_stack(cfg)
    image = platform_image(cfg.image_ref.ref, platform.require_output("repositoryUrl"))
    name = service_name(cfg)
    # The platform repository the service and every job pull from (through the Cloud Run service agent).
    registry = RegistryAccess(
        project=platform.require_output("repositoryProject"),
        location=platform.require_output("repositoryLocation"),
        name=platform.require_output("repositoryName"),
        project_number=gcp.organizations.get_project_output(
            project_id=settings.project, opts=pulumi.InvokeOutputOptions(provider=provider)
        ).number,
    )
    identity = RuntimeIdentity(
        "runtime",
        RuntimeIdentityArgs(
            project=settings.project,
            account_id=physical_name("kz", cfg.model_ref.name, pulumi.get_stack(), max_len=30),
            repository_project=registry.project,
            repository_location=registry.location,
            repository_name=registry.name,
            project_number=registry.project_number,
        ),
        opts=opts,
    )
    retraining = None
    if cfg.retraining is not None:
        from .retraining import CloudRunRetraining, CloudRunRetrainingArgs

        retraining = CloudRunRetraining("retraining", CloudRunRetrainingArgs(
            project=settings.project, region=settings.region, job_name=f"{name[:32].rstrip('-')}-retrain",
            model=cfg.model_ref.name, version=cfg.model_ref.version, settings=cfg.retraining,
            image=platform_image(cfg.retraining.image, platform.require_output("repositoryUrl"),
                                 "kaizen:retraining.image"),
            registry=registry,
        ), opts=opts)
    monitoring = EndpointMonitoring(
        "monitoring",
        EndpointMonitoringArgs(
            project=settings.project,
            service_name=name,
            retention_days=settings.log_retention_days,
            alerts=settings.alerts,
            drift=settings.drift,
            channel_ids=list(settings.notifications.channel_ids),
            emails=list(settings.notifications.emails),
            drift_channel_ids=[retraining.drift_channel] if retraining and retraining.drift_channel else [],
        ),
        opts=opts,
    )
    service = CloudRunService(
        "service",
        CloudRunServiceArgs(
            project=settings.project,
            region=settings.region,
            service_name=name,
            image=image,
            service_account_email=identity.email,
            min_instances=settings.min_instances,
            max_instances=settings.max_instances,
            concurrency=settings.concurrency,
            cpu=settings.cpu,
            memory=settings.memory,
            ingress=settings.ingress,
            invokers=list(settings.invokers),
            canary_percent=settings.canary_percent,
            stable_revision=settings.stable_revision,
            deletion_protection=cfg.protect,
            environment={
                **settings.drift.as_env(),
                **runtime_env(
                    "gcp", "gcp", int(settings.cpu), settings.runtime.workers, settings.runtime.keep_alive_timeout
                ).as_env(),
            },
        ),
        opts=opts,
    )
    outputs: dict[str, Any] = {}
    if settings.batch is not None:
        from .batch import CloudRunBatchJob, CloudRunBatchJobArgs

        job = CloudRunBatchJob("batch", CloudRunBatchJobArgs(
            project=settings.project, region=settings.region, job_name=f"{name[:40]}-batch", image=image,
            settings=settings.batch, registry=registry, cpu=settings.cpu, memory=settings.memory,
        ), opts=opts)
        outputs = {"batchJob": job.job_name, "batchServiceAccount": job.service_account}
    if retraining is not None:
        outputs |= {"retrainingJob": retraining.job_name, "retrainingServiceAccount": retraining.service_account}
    return {
        **outputs,
        **out.serving(endpoint_url=service.uri, image=image, image_digest=cfg.image_ref.digest,
                      model_name=cfg.model_ref.name, model_version=cfg.model_ref.version,
                      dashboard=monitoring.dashboard.apply(  # id: projects/<number>/dashboards/<id>
                          lambda d: "https://console.cloud.google.com/monitoring/dashboards/custom/"
                                    f"{d.rsplit('/', 1)[-1]}?project={settings.project}")),
        "serviceName": service.service_name,
        "dashboardId": monitoring.dashboard,
        out.CLOUD_RUN_URI: service.uri,
        # Who can reach serviceUri (`kaizen ci smoke-stack` says so instead of timing out): only
        # "all" is reachable from a GitHub-hosted runner.
        out.INGRESS: settings.ingress,
        "revision": service.revision,
        "serviceAccount": identity.email,
        "notificationChannels": monitoring.channels,
        "alertPolicies": monitoring.alarm_ids,
    }
