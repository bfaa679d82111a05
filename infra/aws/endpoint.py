"""SageMaker real-time (or serverless) endpoint serving one digest-pinned image.

Blue/green: the Model and the EndpointConfiguration are auto-named by Pulumi, so a new image
digest creates a new model and configuration first (replace-before-delete), then updates the
Endpoint in place; SageMaker brings up the new fleet, shifts traffic (all at once, or a canary
share first when `canaryPercent` > 0) and only then retires the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .rules import has_instance_storage

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class ServerlessArgs:
    memory_mb: int
    max_concurrency: int


@dataclass(frozen=True)
class SageMakerEndpointArgs:
    endpoint_name: str
    image: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    instance_type: str
    min_instances: int
    max_instances: int
    target_invocations_per_instance: int
    serverless: ServerlessArgs | None = None
    capture_destination_uri: pulumi.Input[str] | None = None
    capture_percent: int = 0
    kms_key_arn: pulumi.Input[str] | None = None
    canary_percent: int = 0
    rollback_alarm_names: list[pulumi.Input[str]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    autoscaling: bool = True
    protect: bool = False


class SageMakerEndpoint(pulumi.ComponentResource):
    endpoint_name: pulumi.Output[str]
    endpoint_arn: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]
    model_name: pulumi.Output[str]

    def __init__(self, name: str, args: SageMakerEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:aws:SageMakerEndpoint", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        model = aws.sagemaker.Model(
            f"{name}-model",
            aws.sagemaker.ModelArgs(
                execution_role_arn=args.execution_role_arn,
                # Serverless Inference does not support network isolation (rules.SERVERLESS_DOC).
                enable_network_isolation=args.serverless is None,
                primary_container=aws.sagemaker.ModelPrimaryContainerArgs(
                    image=args.image, mode="SingleModel", environment=args.environment
                ),
            ),
            opts=child,
        )

        if args.serverless is not None:
            variant = aws.sagemaker.EndpointConfigurationProductionVariantArgs(
                variant_name=VARIANT,
                model_name=model.name,
                serverless_config=aws.sagemaker.EndpointConfigurationProductionVariantServerlessConfigArgs(
                    memory_size_in_mb=args.serverless.memory_mb,
                    max_concurrency=args.serverless.max_concurrency,
                ),
            )
        else:
            variant = aws.sagemaker.EndpointConfigurationProductionVariantArgs(
                variant_name=VARIANT,
                model_name=model.name,
                instance_type=args.instance_type,
                initial_instance_count=args.min_instances,
                initial_variant_weight=1.0,
                container_startup_health_check_timeout_in_seconds=600,
            )

        capture = None
        if args.capture_destination_uri is not None and args.capture_percent > 0:
            capture = aws.sagemaker.EndpointConfigurationDataCaptureConfigArgs(
                enable_capture=True,
                initial_sampling_percentage=args.capture_percent,
                destination_s3_uri=args.capture_destination_uri,
                kms_key_id=args.kms_key_arn,
                capture_options=[
                    aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode="Input"),
                    aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureOptionArgs(capture_mode="Output"),
                ],
                capture_content_type_header=aws.sagemaker.EndpointConfigurationDataCaptureConfigCaptureContentTypeHeaderArgs(
                    json_content_types=["application/json"], csv_content_types=["text/csv"]
                ),
            )

        # No `name`: Pulumi auto-names it, so a changed configuration is created before the
        # old one is deleted (configurations are immutable in SageMaker).
        config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            aws.sagemaker.EndpointConfigurationArgs(
                production_variants=[variant],
                data_capture_config=capture,
                # Serverless variants have no ML storage volume to encrypt, and instance types with
                # local NVMe storage refuse a volume key (rules.ENDPOINT_CONFIG_DOC).
                kms_key_arn=None
                if args.serverless is not None or has_instance_storage(args.instance_type)
                else args.kms_key_arn,
            ),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )

        deployment = None
        if args.serverless is None and (args.canary_percent > 0 or args.rollback_alarm_names):
            routing = (
                aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                    type="CANARY",
                    wait_interval_in_seconds=600,
                    canary_size=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationCanarySizeArgs(
                        type="CAPACITY_PERCENT", value=args.canary_percent
                    ),
                )
                if args.canary_percent > 0
                else aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyTrafficRoutingConfigurationArgs(
                    type="ALL_AT_ONCE", wait_interval_in_seconds=300
                )
            )
            deployment = aws.sagemaker.EndpointDeploymentConfigArgs(
                blue_green_update_policy=aws.sagemaker.EndpointDeploymentConfigBlueGreenUpdatePolicyArgs(
                    traffic_routing_configuration=routing,
                    termination_wait_in_seconds=300,
                    maximum_execution_timeout_in_seconds=3600,
                ),
                auto_rollback_configuration=aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationArgs(
                    alarms=[
                        aws.sagemaker.EndpointDeploymentConfigAutoRollbackConfigurationAlarmArgs(alarm_name=a)
                        for a in args.rollback_alarm_names
                    ]
                )
                if args.rollback_alarm_names
                else None,
            )

        endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            aws.sagemaker.EndpointArgs(
                name=args.endpoint_name,
                endpoint_config_name=config.name,
                deployment_config=deployment,
                # AWS cannot turn an instance-backed endpoint into a serverless one (or back):
                # a mode change replaces the endpoint (same name, so delete first).
                tags={"kaizen-endpoint-mode": "serverless" if args.serverless is not None else "instance"},
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                replace_on_changes=['tags["kaizen-endpoint-mode"]'],  # property path: key has dashes
                delete_before_replace=True,
            ),
        )

        # UpdateEndpoint fails when it changes the instance type of an autoscaling target
        # (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html): set
        # `autoscaling: false` for one `pulumi up`, change `instanceType` in the next, re-enable.
        if args.serverless is None and args.autoscaling:
            resource_id = endpoint.name.apply(lambda n: f"endpoint/{n}/variant/{VARIANT}")
            target = aws.appautoscaling.Target(
                f"{name}-scaling-target",
                aws.appautoscaling.TargetArgs(
                    service_namespace="sagemaker",
                    scalable_dimension=SCALABLE_DIMENSION,
                    resource_id=resource_id,
                    min_capacity=args.min_instances,
                    max_capacity=args.max_instances,
                ),
                opts=child,
            )
            aws.appautoscaling.Policy(
                f"{name}-scaling-policy",
                aws.appautoscaling.PolicyArgs(
                    policy_type="TargetTrackingScaling",
                    service_namespace=target.service_namespace,
                    scalable_dimension=target.scalable_dimension,
                    resource_id=target.resource_id,
                    target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                        target_value=float(args.target_invocations_per_instance),
                        predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                            predefined_metric_type="SageMakerVariantInvocationsPerInstance"
                        ),
                        scale_in_cooldown=300,
                        scale_out_cooldown=60,
                    ),
                ),
                opts=child,
            )

        self.endpoint_name = endpoint.name
        self.endpoint_arn = endpoint.arn
        self.endpoint_config_name = config.name
        self.model_name = model.name
        self.register_outputs(
            {
                "endpoint_name": self.endpoint_name,
                "endpoint_arn": self.endpoint_arn,
                "endpoint_config_name": self.endpoint_config_name,
                "model_name": self.model_name,
            }
        )
