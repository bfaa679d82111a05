"""Batch scoring on AWS: a SageMaker Processing job of the model image, started by Step Functions,
scheduled by EventBridge Scheduler.

The pinned pulumi_aws has no resource for a transform or processing *job* (jobs are runs, not
infrastructure), so the component declares what starts one: a state machine whose one task is
`arn:aws:states:::sagemaker:createProcessingJob.sync` (it waits for the job), and, with a schedule,
an EventBridge Scheduler schedule that starts an execution. Each input file is one ProcessingInput
(exactly that key), the output prefix gets one directory per execution, uploaded as it is written.
A failed job is retried in the same execution (so the same prefix, as is a redrive), and the
container's `--resume-from` skips the chunks the killed attempt uploaded (model_packages/batch/resume.py).

Three roles, each for one service and one job:
- processing (sagemaker.amazonaws.com): read exactly the input keys, list the input bucket only
  under those keys, write (and read back, to resume) under the output prefix, pull from one ECR
  repository (the login token action has no resource-level permissions: `Resource: "*"`, as in
  identity.py), write its logs;
- state machine (states.amazonaws.com): create/describe/stop processing jobs of this name prefix,
  pass only the processing role and only to SageMaker, and manage the one EventBridge rule the
  `.sync` integration uses (https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html);
- scheduler (scheduler.amazonaws.com): `states:StartExecution` on this state machine only.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from ..batch_config import BatchSettings, bucket_and_prefix
from .jobs import aws_cron, service_role, start_policy
from .registry import ECR_PULL_ACTIONS

IN, OUT = "/opt/ml/processing/input", "/opt/ml/processing/output"
SYNC_RULE = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
MAX_INPUTS = 10  # SageMaker: at most 10 ProcessingInputs


@dataclass(frozen=True)
class ProcessingBatchJobArgs:
    account_id: str  # resolved; ProcessingBatchJob also takes an Output (see `account`)
    region: str
    job_prefix: str  # processing job names: <prefix>-<uuid> (63 characters at most)
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    settings: BatchSettings
    instance_type: str = "ml.m5.large"
    volume_gb: int = 30


def processing_policy(args: ProcessingBatchJobArgs, repository_arn: str) -> dict[str, Any]:
    s = args.settings
    in_bucket, in_prefix = bucket_and_prefix(s.input)
    out_bucket, out_prefix = bucket_and_prefix(s.output)
    keys = [f"{in_prefix}{name}" for name in s.inputs]
    logs = f"arn:aws:logs:{args.region}:{args.account_id}:log-group:/aws/sagemaker/ProcessingJobs"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadInputs", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{in_bucket}/{k}" for k in keys]},
        {"Sid": "ListInputs", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{in_bucket}"],
         "Condition": {"StringEquals": {"s3:prefix": keys}}},
        {"Sid": "WriteScores", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": [f"arn:aws:s3:::{out_bucket}/{out_prefix}{args.job_prefix}/*"]},
        # a retried job reads back what the killed attempt uploaded (`batch --resume-from`)
        {"Sid": "ReadScores", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{out_bucket}/{out_prefix}{args.job_prefix}/*"]},
        {"Sid": "ListScores", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{out_bucket}"],
         "Condition": {"StringLike": {"s3:prefix": [f"{out_prefix}{args.job_prefix}/*"]}}},
        {"Sid": "EcrAuthToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullModelImage", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": [repository_arn]},
        {"Sid": "JobLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [logs, f"{logs}:log-stream:{args.job_prefix}-*"]},
    ]}


def state_machine_policy(args: ProcessingBatchJobArgs, processing_role_arn: str) -> dict[str, Any]:
    jobs = f"arn:aws:sagemaker:{args.region}:{args.account_id}:processing-job/{args.job_prefix}-*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RunProcessingJobs", "Effect": "Allow",
         "Action": ["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob", "sagemaker:AddTags"], "Resource": [jobs]},
        {"Sid": "PassProcessingRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [processing_role_arn],
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        {"Sid": "SyncRule", "Effect": "Allow", "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
         "Resource": [f"arn:aws:events:{args.region}:{args.account_id}:rule/{SYNC_RULE}"]},
    ]}


def definition(args: ProcessingBatchJobArgs, image: str, role_arn: str) -> dict[str, Any]:
    s = args.settings
    in_bucket, in_prefix = bucket_and_prefix(s.input)
    out_bucket, out_prefix = bucket_and_prefix(s.output)
    scores = f"s3://{out_bucket}/{out_prefix}{args.job_prefix}/"
    container_args = ["batch", *(f"{IN}/{k}/{n}" for k, n in enumerate(s.inputs)), "--out", OUT,
                      "--chunk-rows", str(s.chunk_rows), *(["--probabilities"] if s.probabilities else []),
                      "--resume-from", scores + "{execution}/"]
    return {"Comment": "Kaizen batch scoring: one SageMaker Processing job, waited for", "StartAt": "Score",
            "States": {"Score": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
                                 "End": True,
                                 # a new job of the same execution resumes under the same prefix
                                 "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 60,
                                            "MaxAttempts": 2, "BackoffRate": 2.0}],
                                 "Parameters": {
        "ProcessingJobName.$": f"States.Format('{args.job_prefix}-{{}}', States.UUID())",
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": image, "ContainerArguments": container_args},
        "Environment": {"KAIZEN_BATCH_RUN.$": "$$.Execution.Name"},  # `{execution}` in --resume-from
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": args.instance_type,
                                                  "VolumeSizeInGB": args.volume_gb}},
        "ProcessingInputs": [{"InputName": f"input-{k}", "S3Input": {
            "S3Uri": f"s3://{in_bucket}/{in_prefix}{n}", "LocalPath": f"{IN}/{k}", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}} for k, n in enumerate(s.inputs)],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "scores", "S3Output": {
            "S3Uri.$": f"States.Format('{scores}{{}}/', $$.Execution.Name)",
            "LocalPath": OUT, "S3UploadMode": "Continuous"}}]},
        "StoppingCondition": {"MaxRuntimeInSeconds": s.timeout_minutes * 60},
    }}}}


class ProcessingBatchJob(pulumi.ComponentResource):
    state_machine_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ProcessingBatchJobArgs, opts: pulumi.ResourceOptions | None = None,
                 account: pulumi.Input[str] | None = None):
        """`account`: the account id as an Output (a stack's caller identity), replacing args.account_id."""
        super().__init__("kaizen:aws:ProcessingBatchJob", name, None, opts)
        acct = pulumi.Output.from_input(account if account is not None else args.account_id)

        def resolved(account_id: str) -> ProcessingBatchJobArgs:
            return dataclasses.replace(args, account_id=account_id)

        if len(args.settings.inputs) > MAX_INPUTS:
            raise ValueError(f"batch.inputs: SageMaker Processing takes at most {MAX_INPUTS} inputs")
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,25}", args.job_prefix):
            raise ValueError(f"job prefix {args.job_prefix!r}: letters, digits and '-', 26 at most")
        child = pulumi.ResourceOptions(parent=self)
        processing = service_role(f"{name}-processing", "sagemaker.amazonaws.com", acct, child)
        aws.iam.RolePolicy(f"{name}-processing", aws.iam.RolePolicyArgs(
            role=processing.id, policy=pulumi.Output.all(acct, args.repository_arn).apply(
                lambda v: json.dumps(processing_policy(resolved(v[0]), v[1])))), opts=child)
        machine_role = service_role(f"{name}-states", "states.amazonaws.com", acct, child)
        machine_policy = aws.iam.RolePolicy(f"{name}-states", aws.iam.RolePolicyArgs(
            role=machine_role.id, policy=pulumi.Output.all(acct, processing.arn).apply(
                lambda v: json.dumps(state_machine_policy(resolved(v[0]), v[1])))),
            opts=child)
        machine = aws.sfn.StateMachine(f"{name}-machine", aws.sfn.StateMachineArgs(
            role_arn=machine_role.arn, type="STANDARD",
            definition=pulumi.Output.all(args.image, processing.arn).apply(
                lambda v: json.dumps(definition(args, v[0], v[1])))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[machine_policy]))
        if args.settings.schedule is not None:
            scheduler_role = service_role(f"{name}-scheduler", "scheduler.amazonaws.com", acct, child)
            start = aws.iam.RolePolicy(f"{name}-scheduler", aws.iam.RolePolicyArgs(
                role=scheduler_role.id, policy=machine.arn.apply(
                    lambda arn: json.dumps(start_policy("states:StartExecution", arn)))), opts=child)
            aws.scheduler.Schedule(f"{name}-schedule", aws.scheduler.ScheduleArgs(
                schedule_expression=aws_cron(args.settings.schedule), schedule_expression_timezone="UTC",
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                target=aws.scheduler.ScheduleTargetArgs(arn=machine.arn, role_arn=scheduler_role.arn, input="{}")),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[start]))
        self.state_machine_arn = machine.arn
        self.register_outputs({"state_machine_arn": machine.arn})
