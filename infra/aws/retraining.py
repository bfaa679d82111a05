"""Retraining on AWS: a SageMaker Pipeline with one training step running the trainer image,
started by EventBridge when the endpoint's drift alarm enters ALARM and on a cron schedule.

The training job runs `kaizen retrain` (trainer_args) with network isolation, the image by digest,
inter-container encryption, output (and the volume) encrypted with the stack's KMS key where it has
one. Channels: `data` (exactly the data object), `champion` (the deployed package's prefix); the
candidate and gate report are written to /opt/ml/model, which SageMaker uploads under
<packages>candidates/.

Three roles, each for one service and one job:
- training (sagemaker.amazonaws.com): read the data object and the champion prefix, list the two
  buckets only under those keys, write under the candidates prefix, pull from the trainer image's
  ECR repository (plus ecr:GetAuthorizationToken, which has no resource-level permissions), write
  its logs, use the KMS key;
- pipeline (sagemaker.amazonaws.com): create/describe/stop training jobs, pass the training role
  only to SageMaker. SageMaker Pipelines names the jobs itself, `pipelines-<execution>-<step>-<id>`
  (a TrainingJobName in a step's arguments is not accepted), so this role (and the training role's
  log streams) is scoped to the `pipelines-` prefix: the one exception the policy pack allows
  (infra/aws/rules.py PIPELINE_JOB_PREFIX);
- events (events.amazonaws.com): sagemaker:StartPipelineExecution on this pipeline only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from ..retraining_config import RetrainingSettings, trainer_args
from .jobs import aws_cron, service_role, start_policy
from .registry import ECR_PULL_ACTIONS
from .rules import PIPELINE_JOB_PREFIX

DATA, CHAMPION, MODEL = "/opt/ml/input/data/data", "/opt/ml/input/data/champion", "/opt/ml/model"
STEP = "Retrain"
_ECR = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^@]+)@sha256:")


@dataclass(frozen=True)
class RetrainingPipelineArgs:
    account_id: str
    region: str
    pipeline_name: str  # ≤ 82 characters, letters, digits, '-'
    model: str
    version: str  # the deployed version: the champion
    settings: RetrainingSettings
    drift_alarm_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str] | None = None
    instance_type: str = "ml.m5.large"
    volume_gb: int = 30


def trainer_repository_arn(image: str, region: str) -> str:
    """The ECR repository of a digest-pinned trainer image in the stack's region (SageMaker
    training pulls only from ECR)."""
    m = _ECR.match(image)
    if m is None or m["region"] != region:
        raise ValueError(f"kaizen:retraining.image {image!r}: SageMaker training needs an ECR image in {region} "
                         "(<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:...)")
    return f"arn:aws:ecr:{region}:{m['account']}:repository/{m['repo']}"


def _kms(key: str | None, actions: list[str]) -> list[dict[str, Any]]:
    return [] if not key else [{"Sid": "UseStackKey", "Effect": "Allow", "Action": actions, "Resource": [key]}]


def training_policy(args: RetrainingPipelineArgs, kms_key_arn: str | None) -> dict[str, Any]:
    s = args.settings
    data_bucket, data_key = s.data.removeprefix("s3://").split("/", 1)[0], s.data_key
    bucket, champion = s.champion(args.model, args.version)
    _, candidates = s.candidates()
    logs = f"arn:aws:logs:{args.region}:{args.account_id}:log-group:/aws/sagemaker/TrainingJobs"
    listing: dict[str, list[str]] = {}
    for b, prefix in ((data_bucket, data_key), (bucket, champion)):
        listing.setdefault(b, []).append(prefix)
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadData", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{data_bucket}/{data_key}"]},
        {"Sid": "ReadChampion", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{bucket}/{champion}*"]},
        *({"Sid": f"List{i}", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{b}"],
           "Condition": {"StringLike": {"s3:prefix": [p if p == data_key else f"{p}*" for p in prefixes]}}}
          for i, (b, prefixes) in enumerate(sorted(listing.items()))),
        {"Sid": "WriteCandidates", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": [f"arn:aws:s3:::{bucket}/{candidates}*"]},
        {"Sid": "EcrAuthToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullTrainerImage", "Effect": "Allow", "Action": ECR_PULL_ACTIONS,
         "Resource": [trainer_repository_arn(s.image, args.region)]},
        {"Sid": "JobLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [logs, f"{logs}:log-stream:{PIPELINE_JOB_PREFIX}*"]},
        *_kms(kms_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]),
    ]}


def pipeline_policy(args: RetrainingPipelineArgs, training_role_arn: str, kms_key_arn: str | None) -> dict[str, Any]:
    jobs = f"arn:aws:sagemaker:{args.region}:{args.account_id}:training-job/{PIPELINE_JOB_PREFIX}*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RunTrainingJobs", "Effect": "Allow",
         "Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags"], "Resource": [jobs]},
        {"Sid": "PassTrainingRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [training_role_arn],
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        *_kms(kms_key_arn, ["kms:CreateGrant", "kms:DescribeKey"]),
    ]}


def definition(args: RetrainingPipelineArgs, training_role_arn: str, kms_key_arn: str | None) -> dict[str, Any]:
    """SageMaker Pipeline definition (schema 2020-12-01): one Training step; the `Trigger`
    parameter (schedule / drift) reaches the container as KAIZEN_RETRAIN_TRIGGER."""
    s = args.settings
    bucket, champion = s.champion(args.model, args.version)
    _, candidates = s.candidates()
    data_file = s.data_key.rsplit("/", 1)[-1]
    encryption = {"KmsKeyId": kms_key_arn} if kms_key_arn else {}
    training = {
        "AlgorithmSpecification": {"TrainingImage": s.image, "TrainingInputMode": "File",
                                   "ContainerEntrypoint": ["kaizen"],
                                   "ContainerArguments": trainer_args(f"{DATA}/{data_file}", CHAMPION, MODEL)},
        "RoleArn": training_role_arn,
        "InputDataConfig": [
            {"ChannelName": "data", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": s.data, "S3DataDistributionType": "FullyReplicated"}}},
            {"ChannelName": "champion", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{champion}",
                "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{candidates}", **encryption},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": args.instance_type, "VolumeSizeInGB": args.volume_gb,
                           **({"VolumeKmsKeyId": kms_key_arn} if kms_key_arn else {})},
        "StoppingCondition": {"MaxRuntimeInSeconds": s.timeout_minutes * 60},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "Environment": {"KAIZEN_RETRAIN_TRIGGER": {"Get": "Parameters.Trigger"}},
    }
    return {"Version": "2020-12-01", "Metadata": {},
            "Parameters": [{"Name": "Trigger", "Type": "String", "DefaultValue": "manual"}],
            "Steps": [{"Name": STEP, "Type": "Training", "Arguments": training}]}


def drift_pattern(alarm_arn: str) -> dict[str, Any]:
    """The drift alarm (exactly this ARN) changing state to ALARM."""
    return {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
            "resources": [alarm_arn], "detail": {"state": {"value": ["ALARM"]}}}


class RetrainingPipeline(pulumi.ComponentResource):
    pipeline_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RetrainingPipelineArgs, opts: pulumi.ResourceOptions | None = None,
                 account: pulumi.Input[str] | None = None):
        """`account`: the account id as an Output (a stack's caller identity), replacing args.account_id."""
        super().__init__("kaizen:aws:RetrainingPipeline", name, None, opts)
        if not re.fullmatch(r"[a-zA-Z0-9](-?[a-zA-Z0-9]){0,81}", args.pipeline_name):
            raise ValueError(f"pipeline name {args.pipeline_name!r}: letters, digits and single '-', 82 at most")
        trainer_repository_arn(args.settings.image, args.region)  # fail now, not in an apply
        acct = pulumi.Output.from_input(account if account is not None else args.account_id)
        key = pulumi.Output.from_input(args.kms_key_arn if args.kms_key_arn is not None else "")

        def at(account_id: str) -> RetrainingPipelineArgs:
            from dataclasses import replace

            return replace(args, account_id=account_id)

        child = pulumi.ResourceOptions(parent=self)

        training = service_role(f"{name}-training", "sagemaker.amazonaws.com", acct, child)
        training_policy_ = aws.iam.RolePolicy(f"{name}-training", aws.iam.RolePolicyArgs(
            role=training.id, policy=pulumi.Output.all(acct, key).apply(
                lambda v: json.dumps(training_policy(at(v[0]), v[1] or None)))), opts=child)
        runner = service_role(f"{name}-pipeline", "sagemaker.amazonaws.com", acct, child)
        runner_policy = aws.iam.RolePolicy(f"{name}-pipeline", aws.iam.RolePolicyArgs(
            role=runner.id, policy=pulumi.Output.all(acct, training.arn, key).apply(
                lambda v: json.dumps(pipeline_policy(at(v[0]), v[1], v[2] or None)))), opts=child)
        pipeline = aws.sagemaker.Pipeline(f"{name}-pipeline", aws.sagemaker.PipelineArgs(
            pipeline_name=args.pipeline_name, pipeline_display_name=args.pipeline_name, role_arn=runner.arn,
            pipeline_description=f"kaizen retrain of {args.model} against the deployed {args.version}",
            pipeline_definition=pulumi.Output.all(training.arn, key).apply(
                lambda v: json.dumps(definition(args, v[0], v[1] or None)))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[training_policy_, runner_policy]))
        events = service_role(f"{name}-events", "events.amazonaws.com", acct, child)
        start = aws.iam.RolePolicy(f"{name}-events", aws.iam.RolePolicyArgs(
            role=events.id, policy=pipeline.arn.apply(lambda arn: json.dumps(
                start_policy("sagemaker:StartPipelineExecution", arn, sid="StartRetraining")))), opts=child)

        def trigger(kind: str, rule_args: aws.cloudwatch.EventRuleArgs) -> None:
            rule = aws.cloudwatch.EventRule(f"{name}-{kind}", rule_args, opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{kind}", aws.cloudwatch.EventTargetArgs(
                rule=rule.name, arn=pipeline.arn, role_arn=events.arn,
                sagemaker_pipeline_target=aws.cloudwatch.EventTargetSagemakerPipelineTargetArgs(
                    pipeline_parameter_lists=[aws.cloudwatch.EventTargetSagemakerPipelineTargetPipelineParameterListArgs(
                        name="Trigger", value=kind)])),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[start]))

        if args.settings.on_drift:
            trigger("drift", aws.cloudwatch.EventRuleArgs(
                description=f"retrain {args.model} when its drift alarm fires",
                event_pattern=pulumi.Output.from_input(args.drift_alarm_arn).apply(
                    lambda arn: json.dumps(drift_pattern(arn)))))
        if args.settings.schedule is not None:
            trigger("schedule", aws.cloudwatch.EventRuleArgs(
                description=f"retrain {args.model} on schedule", schedule_expression=aws_cron(args.settings.schedule)))
        self.pipeline_arn = pipeline.arn
        self.register_outputs({"pipeline_arn": pipeline.arn})
