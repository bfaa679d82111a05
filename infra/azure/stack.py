"""The Azure stack: platform (ACR) or serving (Container Apps | Azure ML + monitoring + identity)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_azure_native as azure

from model_packages import stack_outputs as out

from ..common.config import AzureSettings, StackConfig
from ..common.naming import alnum_name, physical_name
from ..common.platform import platform_image, platform_stack
from ..common.runtime import azure_vcpus, runtime_env, workers_for_cpu
from .containerapp import ContainerAppEndpoint, ContainerAppEndpointArgs
from .identity import PullIdentity, PullIdentityArgs
from .jobs import JobEnvironment
from .mlendpoint import MlEndpointArgs, MlOnlineEndpoint
from .monitoring import EndpointMonitoring, EndpointMonitoringArgs
from .observability import Observability, ObservabilityArgs
from .registry import ContainerRegistry, ContainerRegistryArgs


def registry_name(stack: str, settings: AzureSettings) -> str:
    """Globally unique ACR name (5-50 alphanumerics): `kaizen<stack>[<nameSuffix>]`."""
    return alnum_name("kaizen", stack, settings.name_suffix or "", max_len=50)


def deploy(cfg: StackConfig) -> dict[str, Any]:
    settings = cfg.azure
    assert settings is not None
    provider = azure.Provider("azure", azure.ProviderArgs(location=settings.location))
    opts = pulumi.ResourceOptions(providers=[provider])
    stack = pulumi.get_stack()
    group = azure.resources.ResourceGroup(
        "rg",
        azure.resources.ResourceGroupArgs(
            location=settings.location, resource_group_name=physical_name("rg-kaizen", stack, max_len=90)
        ),
        opts=pulumi.ResourceOptions(providers=[provider], protect=cfg.protect),
    )
    if cfg.stack_kind == "platform":
        registry = ContainerRegistry(
            "registry",
            ContainerRegistryArgs(
                resource_group_name=group.name,
                location=settings.location,
                registry_name=registry_name(stack, settings),
                sku=settings.acr_sku,
                protect=cfg.protect,
            ),
            opts=opts,
        )
        outputs: dict[str, Any] = {"registryId": registry.registry_id, "loginServer": registry.login_server,
                                   "resourceGroup": group.name}
        if cfg.github is not None:
            from .github_trust import GithubDeployTrust, GithubDeployTrustArgs

            trust = GithubDeployTrust(
                "github",
                GithubDeployTrustArgs(
                    repository=cfg.github.repository,
                    subscription_id=azure.authorization.get_client_config_output(
                        opts=pulumi.InvokeOutputOptions(provider=provider)
                    ).subscription_id,
                    resource_group_name=group.name,
                    location=settings.location,
                    environments=cfg.github.environments,
                ),
                opts=opts,
            )
            outputs["deployClientId"] = trust.client_id
        return outputs
    return _serving(cfg, settings, group, opts, provider)


def _serving(
    cfg: StackConfig,
    settings: AzureSettings,
    group: azure.resources.ResourceGroup,
    opts: pulumi.ResourceOptions,
    provider: azure.Provider,
) -> dict[str, Any]:
    platform = platform_stack(cfg)
    registry_id = platform.require_output("registryId")
    login_server = platform.require_output("loginServer")
    image = platform_image(cfg.image_ref.ref, login_server)
    suffix = settings.name_suffix or ""
    base = physical_name("kz", cfg.model_ref.name, pulumi.get_stack(), suffix, max_len=24)
    client = azure.authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(provider=provider))
    if settings.compute == "ml":
        vcpus, front_end = azure_vcpus(settings.instance_type), "azure-ml"
    else:
        vcpus, front_end = workers_for_cpu(settings.cpu), "azure-containerapp"
    runtime = runtime_env("azure", front_end, vcpus, settings.runtime.workers, settings.runtime.keep_alive_timeout)
    environment = {**settings.drift.as_env(), **runtime.as_env()}

    observability = Observability(
        "observability",
        ObservabilityArgs(
            resource_group_name=group.name,
            location=settings.location,
            base_name=base,
            retention_days=settings.log_retention_days,
            provider=provider,
            action_group_id=settings.notifications.action_group_id,
            emails=list(settings.notifications.emails),
        ),
        opts=opts,
    )
    identity = PullIdentity(
        "identity",
        PullIdentityArgs(
            resource_group_name=group.name,
            location=settings.location,
            identity_name=f"{base}-pull",
            registry_id=registry_id,
            subscription_id=client.subscription_id,
        ),
        opts=opts,
    )
    # The identity must be able to pull before the first revision/deployment starts.
    after_pull = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[identity]))
    outputs: dict[str, Any] = {
        out.IMAGE: image,
        out.IMAGE_DIGEST: cfg.image_ref.digest,
        out.MODEL_NAME: cfg.model_ref.name,
        out.MODEL_VERSION: cfg.model_ref.version,
        "identityId": identity.identity_id,
        "actionGroupId": observability.action_group_id,
    }
    drift_groups: tuple[pulumi.Input[str], ...] = ()
    if settings.compute == "containerapp":
        app_name = physical_name("kaizen", cfg.model_ref.name, pulumi.get_stack(), max_len=32)
        app = ContainerAppEndpoint(
            "endpoint",
            ContainerAppEndpointArgs(
                resource_group_name=group.name,
                location=settings.location,
                app_name=app_name,
                image=image,
                registry_server=login_server,
                identity_id=identity.identity_id,
                workspace_customer_id=observability.workspace_customer_id,
                workspace_shared_key=observability.workspace_shared_key,
                app_insights_connection_string=observability.app_insights_connection_string,
                cpu=settings.cpu,
                memory=settings.memory,
                min_replicas=settings.min_instances,
                max_replicas=settings.max_instances,
                concurrency=settings.concurrency,
                public=settings.public,
                canary_percent=settings.canary_percent,
                stable_revision=settings.stable_revision,
                environment=environment,
                infrastructure_subnet_id=settings.infrastructure_subnet_id,
                protect=cfg.protect,
            ),
            opts=after_pull,
        )
        target_id, target_name = app.app_id, app_name
        outputs.update({out.ENDPOINT_URL: app.fqdn.apply(lambda fqdn: f"https://{fqdn}"),
                        "appId": app.app_id, out.CONTAINER_APP_FQDN: app.fqdn, "latestRevision": app.latest_revision,
                        # Who can reach fqdn: "external" (kaizen:azure.public), "vnet" (internal, with
                        # kaizen:azure.infrastructureSubnetId) or "environment" (apps of its environment only).
                        out.INGRESS: "external" if settings.public
                        else "vnet" if settings.infrastructure_subnet_id else "environment"})
        # Batch and retraining jobs run in the app's environment and pull from the platform registry.
        jobs = JobEnvironment(resource_group_name=group.name, location=settings.location,
                              environment_id=app.environment_id, registry_server=login_server,
                              registry_id=registry_id, subscription_id=client.subscription_id)
        if settings.batch is not None:
            from .batch import ContainerAppsBatchJob, ContainerAppsBatchJobArgs

            batch = ContainerAppsBatchJob(
                "batch",
                ContainerAppsBatchJobArgs(
                    where=jobs,
                    job_name=physical_name("kz", cfg.model_ref.name, pulumi.get_stack(), "batch", max_len=32),
                    image=image,
                    settings=settings.batch,
                ),
                opts=opts,
            )
            outputs["batchJobId"] = batch.job_id
        if cfg.retraining is not None:
            from .retraining import ContainerAppsRetraining, ContainerAppsRetrainingArgs

            retraining = ContainerAppsRetraining(
                "retraining",
                ContainerAppsRetrainingArgs(
                    where=jobs,
                    job_name=physical_name("kz", cfg.model_ref.name, pulumi.get_stack(), "retrain", max_len=32),
                    model=cfg.model_ref.name,
                    version=cfg.model_ref.version,
                    settings=cfg.retraining,
                    image=platform_image(cfg.retraining.image, login_server, "kaizen:retraining.image"),
                ),
                opts=opts,
            )
            if retraining.drift_action_group_id is not None:
                drift_groups = (retraining.drift_action_group_id,)
            outputs.update({"retrainingJobId": retraining.job_id, "retrainingClientId": retraining.identity_client_id})
    else:
        endpoint_name = physical_name("kz", cfg.model_ref.name, pulumi.get_stack(), suffix, max_len=32)
        ml = MlOnlineEndpoint(
            "endpoint",
            MlEndpointArgs(
                resource_group_name=group.name,
                location=settings.location,
                base_name=base,
                endpoint_name=endpoint_name,
                image=image,
                image_digest=cfg.image_ref.digest,
                identity_id=identity.identity_id,
                identity_principal_id=identity.principal_id,
                subscription_id=client.subscription_id,
                tenant_id=client.tenant_id,
                registry_id=registry_id,
                app_insights_id=observability.app_insights_id,
                log_workspace_id=observability.workspace_id,
                instance_type=settings.instance_type,
                min_instances=settings.min_instances,
                max_instances=settings.max_instances,
                concurrency=settings.concurrency,
                production=cfg.stack_kind == "prod",
                public=settings.public,
                private_network=settings.ml_private_network,
                previous_image=settings.previous_image,
                traffic=settings.ml_traffic,
                protect=cfg.protect,
                environment=environment,
            ),
            opts=after_pull,
        )
        target_id, target_name = ml.endpoint_id, endpoint_name
        outputs.update({out.ENDPOINT_URL: ml.scoring_uri, "endpointId": ml.endpoint_id,
                        out.AZURE_ML_SCORING_URI: ml.scoring_uri, "deployments": ml.deployment_names})
    alerts = EndpointMonitoring(
        "alerts",
        EndpointMonitoringArgs(
            resource_group_name=group.name,
            location=settings.location,
            base_name=base,
            compute=settings.compute,
            target_name=target_name,
            target_id=target_id,
            workspace_id=observability.workspace_id,
            action_group_id=observability.action_group_id,
            alerts=settings.alerts,
            drift=settings.drift,
            max_instances=settings.max_instances,
            drift_action_group_ids=drift_groups,
        ),
        opts=opts,
    )
    outputs.update({"alertIds": alerts.alarm_ids, "dashboardId": alerts.dashboard,
                    out.DASHBOARD: alerts.dashboard.apply(lambda d: f"https://portal.azure.com/#resource{d}")})
    return outputs
