"""The AWS stack: platform (ECR) or serving (SageMaker endpoint + monitoring + identity)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from model_packages import stack_outputs as out

from ..common.config import AwsSettings, ConfigError, StackConfig
from ..common.naming import physical_name
from ..common.platform import platform_image, platform_stack
from ..common.runtime import aws_vcpus, runtime_env
from .endpoint import SageMakerEndpoint, SageMakerEndpointArgs, ServerlessArgs
from .identity import SageMakerExecutionRole, SageMakerRoleArgs
from .monitoring import EndpointMonitoring, EndpointMonitoringArgs
from .registry import EcrRegistry, EcrRegistryArgs
from .storage import CaptureBucket, CaptureBucketArgs


def endpoint_name(cfg: StackConfig) -> str:
    return physical_name("kaizen", cfg.model_ref.name, pulumi.get_stack(), max_len=63)


def deploy(cfg: StackConfig) -> dict[str, Any]:
    settings = cfg.aws
    assert settings is not None
    provider = aws.Provider("aws", aws.ProviderArgs(region=settings.region))
    opts = pulumi.ResourceOptions(providers=[provider])
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    account_id = aws.get_caller_identity_output(opts=invoke).account_id
    if cfg.stack_kind == "platform":
        return _platform(cfg, settings, account_id, opts)
    return _serving(cfg, settings, account_id, invoke, opts)


def _platform(
    cfg: StackConfig, settings: AwsSettings, account_id: pulumi.Output[str], opts: pulumi.ResourceOptions
) -> dict[str, Any]:
    urls: dict[str, pulumi.Output[str]] = {}
    arns: dict[str, pulumi.Output[str]] = {}
    for model in cfg.platform_models:
        registry = EcrRegistry(
            f"registry-{model}",
            EcrRegistryArgs(
                repository_name=f"kaizen/{model}",
                keep_images=settings.ecr_keep_images,
                protect=cfg.protect,
            ),
            opts=opts,
        )
        urls[model] = registry.repository_url
        arns[model] = registry.repository_arn
    outputs: dict[str, Any] = {"repositoryUrls": urls, "repositoryArns": arns}
    if cfg.github is not None:
        from .github_trust import GithubDeployTrust, GithubDeployTrustArgs

        trust = GithubDeployTrust(
            "github",
            GithubDeployTrustArgs(repository=cfg.github.repository, account_id=account_id, region=settings.region,
                                  environments=cfg.github.environments),
            opts=opts,
        )
        outputs["deployRoleArn"] = trust.role_arn
    return outputs


def _entry(mapping: Any, model: str, output: str) -> str:
    if not isinstance(mapping, dict) or model not in mapping:
        raise ConfigError(
            f"kaizen:platformStack: output {output} has no repository for model {model!r} "
            "(add it to kaizen:platformModels of the platform stack)"
        )
    return str(mapping[model])


def _serving(
    cfg: StackConfig,
    settings: AwsSettings,
    account_id: pulumi.Output[str],
    invoke: pulumi.InvokeOutputOptions,
    opts: pulumi.ResourceOptions,
) -> dict[str, Any]:
    platform = platform_stack(cfg)
    model = cfg.model_ref.name
    repository_url = platform.require_output("repositoryUrls").apply(lambda m: _entry(m, model, "repositoryUrls"))
    repository_arn = platform.require_output("repositoryArns").apply(lambda m: _entry(m, model, "repositoryArns"))
    image = platform_image(cfg.image_ref.ref, repository_url)
    name = endpoint_name(cfg)
    serverless = settings.serverless is not None
    partition = aws.get_partition_output(opts=invoke).partition
    vcpus = None if serverless else aws_vcpus(settings.instance_type)
    if serverless:  # Serverless: vCPUs grow with memory (1 per 1-2 GB); one worker per 2 GB is safe.
        assert settings.serverless is not None
        vcpus = max(1, settings.serverless.memory_mb // 2048)
    runtime = runtime_env("aws", "aws", vcpus, settings.runtime.workers, settings.runtime.keep_alive_timeout)

    monitoring = EndpointMonitoring(
        "monitoring",
        EndpointMonitoringArgs(
            endpoint_name=name,
            region=settings.region,
            retention_days=settings.log_retention_days,
            alerts=settings.alerts,
            drift=settings.drift,
            serverless=serverless,
            account_id=account_id,
            partition=partition,
            vcpus=vcpus or runtime.workers,
            topic_arn=settings.notifications.topic_arn,
            emails=list(settings.notifications.emails),
        ),
        opts=opts,
    )

    # Serverless endpoints support neither data capture nor a KMS volume key.
    capture = None
    if not serverless and settings.data_capture_percent > 0:
        capture = CaptureBucket(
            "capture",
            CaptureBucketArgs(
                retention_days=90 if cfg.stack_kind == "prod" else 30,
                # Only prod keeps captured data on destroy (it is also protected); a staging
                # teardown would otherwise stop at BucketNotEmpty.
                force_destroy=cfg.stack_kind != "prod",
            ),
            opts=opts,
        )

    log_group_arn = pulumi.Output.all(partition, account_id).apply(
        lambda v: f"arn:{v[0]}:logs:{settings.region}:{v[1]}:log-group:/aws/sagemaker/Endpoints/{name}"
    )
    role = SageMakerExecutionRole(
        "execution",
        SageMakerRoleArgs(
            account_id=account_id,
            repository_arn=repository_arn,
            log_group_arn=log_group_arn,
            region=settings.region,
            partition=partition,
            capture_prefix_arn=capture.prefix_arn if capture else None,
            capture_kms_key_arn=capture.kms_key_arn if capture else None,
            alarm_arns=[monitoring.alarm_ids["latency"], monitoring.alarm_ids["errors"]] if not serverless else None,
        ),
        opts=opts,
    )

    endpoint = SageMakerEndpoint(
        "endpoint",
        SageMakerEndpointArgs(
            endpoint_name=name,
            image=image,
            execution_role_arn=role.role_arn,
            instance_type=settings.instance_type,
            min_instances=settings.min_instances,
            max_instances=settings.max_instances,
            target_invocations_per_instance=settings.target_invocations_per_instance,
            serverless=ServerlessArgs(settings.serverless.memory_mb, settings.serverless.max_concurrency)
            if settings.serverless
            else None,
            capture_destination_uri=capture.destination_uri if capture else None,
            capture_percent=settings.data_capture_percent,
            kms_key_arn=capture.kms_key_arn if capture else None,
            canary_percent=settings.canary_percent,
            rollback_alarm_names=[monitoring.alarm_names["latency"], monitoring.alarm_names["errors"]]
            if not serverless
            else [],
            environment={**settings.drift.as_env(), **runtime.as_env()},
            autoscaling=settings.autoscaling,
            protect=cfg.protect,
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[monitoring])),
    )
    dns_suffix = aws.get_partition_output(opts=invoke).dns_suffix
    outputs: dict[str, Any] = {
        **out.serving(
            endpoint_url=pulumi.Output.all(dns_suffix, endpoint.endpoint_name).apply(
                lambda v: f"https://runtime.sagemaker.{settings.region}.{v[0]}/endpoints/{v[1]}/invocations"),
            image=image, image_digest=cfg.image_ref.digest, model_name=model, model_version=cfg.model_ref.version,
            dashboard=monitoring.dashboard.apply(
                lambda d: f"https://console.aws.amazon.com/cloudwatch/home?region={settings.region}#dashboards:name={d}"),
        ),
        out.SAGEMAKER_ENDPOINT: endpoint.endpoint_name,
        "endpointArn": endpoint.endpoint_arn,
        "endpointConfigName": endpoint.endpoint_config_name,
        "executionRoleArn": role.role_arn,
        "alarmTopicArn": monitoring.topic_arn,
        "dashboardName": monitoring.dashboard,
        "logGroupName": monitoring.log_group_name,
    }
    if capture is not None:
        outputs["captureBucket"] = capture.bucket_name
        outputs["captureUri"] = capture.destination_uri
    if settings.batch is not None:
        from .batch import ProcessingBatchJob, ProcessingBatchJobArgs

        job = ProcessingBatchJob("batch", ProcessingBatchJobArgs(
            account_id="", region=settings.region, job_prefix=f"{name[:20].rstrip('-')}-batch", image=image,
            repository_arn=repository_arn, settings=settings.batch, instance_type=settings.instance_type,
        ), opts, account=account_id)
        outputs["batchStateMachineArn"] = job.state_machine_arn
    if cfg.retraining is not None:
        from .retraining import RetrainingPipeline, RetrainingPipelineArgs

        retraining = RetrainingPipeline("retraining", RetrainingPipelineArgs(
            account_id="", region=settings.region, pipeline_name=f"{name[:70].rstrip('-')}-retrain",
            model=model, version=cfg.model_ref.version, settings=cfg.retraining,
            drift_alarm_arn=monitoring.alarm_ids["drift"], kms_key_arn=capture.kms_key_arn if capture else None,
            instance_type=settings.instance_type), opts, account=account_id)
        outputs["retrainingPipelineArn"] = retraining.pipeline_arn
    return outputs
