"""Retraining declared next to the endpoint (`kaizen:retraining`), under Pulumi mocks: the stack
program of a committed serving stack plus the block, asserting schedules, the exact drift alarm,
the trainer image by digest and every IAM statement; the policy pack passes; off by default."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.azure.deploy_role import starter_role_definition
from infra.azure.retraining import STARTER_ROLE
from infra.cloud_rules import all_rules
from infra.common.rules import Res, evaluate
from infra.policy.guardrails import policy_violations

from .conftest import ACCOUNT, Recorded, Run, _fake_state, load_stack_config, platform_outputs, run_program
from .test_policy import violations

TRAINER = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris-trainer@sha256:" + "1" * 64
AWS_RETRAINING = {"image": TRAINER, "data": "s3://kaizen-train/iris/latest.csv", "packages": "s3://kaizen-pkgs/store/",
                  "schedule": "0 4 * * 1", "timeoutMinutes": 90}


def _arn(r: Recorded) -> str:
    return _fake_state(r.typ, r.name, r.inputs)["arn"]


def _policies(run: Run) -> dict[str, Any]:
    return {r.name: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/rolePolicy:RolePolicy")}


def _named(run: Run, typ: str, name: str) -> Recorded:
    (found,) = [r for r in run.of_type(typ) if r.name == name]
    return found


@pytest.fixture(scope="module")
def aws_run() -> Run:
    cfg = load_stack_config("aws-dev")
    return run_program("aws-dev", {**cfg, "retraining": AWS_RETRAINING})


def test_aws_pipeline_trains_with_the_trainer_image_isolated_and_encrypted(aws_run: Run) -> None:
    pipeline = aws_run.one("aws:sagemaker/pipeline:Pipeline")
    assert pipeline.inputs["pipelineName"] == "kaizen-iris-aws-dev-retrain"
    (step,) = json.loads(pipeline.inputs["pipelineDefinition"])["Steps"]
    assert step["Type"] == "Training"
    job = step["Arguments"]
    key = _arn(_named(aws_run, "aws:kms/key:Key", "capture-key"))  # the stack's data key
    assert job["AlgorithmSpecification"] == {
        "TrainingImage": TRAINER, "TrainingInputMode": "File", "ContainerEntrypoint": ["kaizen"],
        "ContainerArguments": ["retrain", "/opt/kaizen/pipeline.py", "--data", "/opt/ml/input/data/data/latest.csv",
                               "--champion", "/opt/ml/input/data/champion", "--out", "/opt/ml/model",
                               "--cache", "/tmp/kaizen-cache", "--reject-ok"]}
    assert job["EnableNetworkIsolation"] is True and job["EnableInterContainerTrafficEncryption"] is True
    assert job["OutputDataConfig"] == {"S3OutputPath": "s3://kaizen-pkgs/store/candidates/", "KmsKeyId": key}
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == key
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 90 * 60}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    # the champion is the version the stack serves (kaizen:model), never "latest"
    assert channels == {"data": "s3://kaizen-train/iris/latest.csv", "champion": "s3://kaizen-pkgs/store/iris/1.0.0/"}
    training_role = _named(aws_run, "aws:iam/role:Role", "retraining-training")
    assert job["RoleArn"] == _arn(training_role)
    assert pipeline.inputs["roleArn"] == _arn(_named(aws_run, "aws:iam/role:Role", "retraining-pipeline"))
    assert aws_run.outputs["retrainingPipelineArn"] == _arn(pipeline)


def test_aws_rules_match_the_drift_alarm_exactly_and_the_schedule(aws_run: Run) -> None:
    drift_alarm = _named(aws_run, "aws:cloudwatch/metricAlarm:MetricAlarm", "monitoring-drift")
    pipeline_arn = _arn(aws_run.one("aws:sagemaker/pipeline:Pipeline"))
    rules = {r.name: r for r in aws_run.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert set(rules) == {"retraining-drift", "retraining-schedule"}
    assert json.loads(rules["retraining-drift"].inputs["eventPattern"]) == {
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
        "resources": [f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:{drift_alarm.inputs['name']}"],
        "detail": {"state": {"value": ["ALARM"]}}}
    assert drift_alarm.inputs["name"] == "kaizen-iris-aws-dev-drift"
    assert rules["retraining-schedule"].inputs["scheduleExpression"] == "cron(0 4 ? * 2 *)"  # Mondays 04:00 UTC
    events_role = _arn(_named(aws_run, "aws:iam/role:Role", "retraining-events"))
    targets = {r.name: r.inputs for r in aws_run.of_type("aws:cloudwatch/eventTarget:EventTarget")}
    for kind in ("drift", "schedule"):
        target = targets[f"retraining-{kind}"]
        assert target["arn"] == pipeline_arn and target["roleArn"] == events_role
        assert target["sagemakerPipelineTarget"] == {"pipelineParameterLists": [{"name": "Trigger", "value": kind}]}


def test_aws_retraining_iam_is_exact(aws_run: Run) -> None:
    policies = _policies(aws_run)
    key = _arn(_named(aws_run, "aws:kms/key:Key", "capture-key"))
    training_role = _arn(_named(aws_run, "aws:iam/role:Role", "retraining-training"))
    logs = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs"
    assert policies["retraining-training"]["Statement"] == [
        {"Sid": "ReadData", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::kaizen-train/iris/latest.csv"]},
        {"Sid": "ReadChampion", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::kaizen-pkgs/store/iris/1.0.0/*"]},
        {"Sid": "List0", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::kaizen-pkgs"],
         "Condition": {"StringLike": {"s3:prefix": ["store/iris/1.0.0/*"]}}},
        {"Sid": "List1", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::kaizen-train"],
         "Condition": {"StringLike": {"s3:prefix": ["iris/latest.csv"]}}},
        {"Sid": "WriteCandidates", "Effect": "Allow", "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
         "Resource": ["arn:aws:s3:::kaizen-pkgs/store/candidates/*"]},
        {"Sid": "EcrAuthToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "PullTrainerImage", "Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability",
                                                                  "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/kaizen/iris-trainer"]},
        {"Sid": "JobLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [logs, f"{logs}:log-stream:pipelines-*"]},
        {"Sid": "UseStackKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [key]},
    ]
    assert policies["retraining-pipeline"]["Statement"] == [
        {"Sid": "RunTrainingJobs", "Effect": "Allow",
         "Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags"],
         "Resource": [f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/pipelines-*"]},
        {"Sid": "PassTrainingRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [training_role],
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        {"Sid": "UseStackKey", "Effect": "Allow", "Action": ["kms:CreateGrant", "kms:DescribeKey"], "Resource": [key]},
    ]
    assert policies["retraining-events"]["Statement"] == [
        {"Sid": "StartRetraining", "Effect": "Allow", "Action": ["sagemaker:StartPipelineExecution"],
         "Resource": [_arn(aws_run.one("aws:sagemaker/pipeline:Pipeline"))]}]
    services = {"retraining-training": "sagemaker.amazonaws.com", "retraining-pipeline": "sagemaker.amazonaws.com",
                "retraining-events": "events.amazonaws.com"}
    for name, service in services.items():
        (trust,) = json.loads(_named(aws_run, "aws:iam/role:Role", name).inputs["assumeRolePolicy"])["Statement"]
        assert trust["Principal"] == {"Service": service}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_aws_stack_with_retraining_passes_the_policy_pack(aws_run: Run) -> None:
    assert violations(aws_run) == []
    # the exception is the SageMaker Pipelines prefix on training jobs only
    for resource in (f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/other-*",
                     f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/pipelines-*",
                     f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints:log-stream:pipelines-*"):
        doc = {"Statement": [{"Effect": "Allow", "Action": ["sagemaker:CreateTrainingJob"], "Resource": [resource]}]}
        assert policy_violations(doc) == [f"statement: wildcard resource {resource!r}"]


def test_aws_without_a_schedule_or_key_has_only_the_drift_trigger() -> None:
    cfg = load_stack_config("aws-pr-7")  # serverless preview: no capture bucket, so no data key
    run = run_program("aws-pr-7", {**cfg, "retraining": {**AWS_RETRAINING, "schedule": None}})
    assert [r.name for r in run.of_type("aws:cloudwatch/eventRule:EventRule")] == ["retraining-drift"]
    (step,) = json.loads(run.one("aws:sagemaker/pipeline:Pipeline").inputs["pipelineDefinition"])["Steps"]
    assert "KmsKeyId" not in step["Arguments"]["OutputDataConfig"]
    assert all(s["Sid"] != "UseStackKey" for p in _policies(run).values() for s in p["Statement"])
    assert violations(run) == []


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev", "azure-dev"])
def test_retraining_is_off_by_default(stack: str) -> None:
    run = run_program(stack)
    assert not [r for r in run.resources if "Retraining" in r.typ or "retraining" in r.name]


@pytest.mark.parametrize(("change", "message"), [
    ({"data": "gs://kaizen-train/iris/latest.csv"}, "data is gcp storage but packages is aws"),
    ({"data": "s3://kaizen-train/iris/"}, "must name one .csv object"),
    ({"image": TRAINER.replace("@sha256:" + "1" * 64, ":latest")}, "not a digest-pinned trainer image"),
    ({"schedule": None, "onDrift": False}, "no trigger"),
    ({"image": "europe-docker.pkg.dev/p/r/trainer@sha256:" + "1" * 64}, "SageMaker training needs an ECR image"),
])
def test_aws_bad_retraining_config_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    cfg = load_stack_config("aws-dev")
    with pytest.raises(Exception, match=message):
        run_program("aws-dev", {**cfg, "retraining": {**AWS_RETRAINING, **change}})


def test_retraining_belongs_to_a_cloud_serving_stack() -> None:
    from infra.common.config import parse_config

    cfg = load_stack_config("aws-platform")
    with pytest.raises(Exception, match="kaizen:retraining: only a cloud serving stack"):
        parse_config({**cfg, "retraining": AWS_RETRAINING}, "aws-platform")
    gcp = load_stack_config("gcp-dev")
    with pytest.raises(Exception, match=r"kaizen:retraining: data 's3://.*' is aws storage, but the target is 'gcp'"):
        parse_config({**gcp, "retraining": AWS_RETRAINING}, "gcp-dev")


GCP_TRAINER = "europe-west4-docker.pkg.dev/kaizen-test/kaizen/kaizen/iris-trainer@sha256:" + "2" * 64
GCP_RETRAINING = {"image": GCP_TRAINER, "data": "gs://kaizen-train/iris/latest.csv", "packages": "gs://kaizen-pkgs/store/",
                  "schedule": "0 4 * * 1"}


@pytest.fixture(scope="module")
def gcp_run() -> Run:
    return run_program("gcp-dev", {**load_stack_config("gcp-dev"), "retraining": GCP_RETRAINING})


def test_gcp_job_runs_the_trainer_on_its_buckets_only(gcp_run: Run) -> None:
    job = _named(gcp_run, "gcp:cloudrunv2/job:Job", "retraining-job")
    template = job.inputs["template"]["template"]
    (container,) = template["containers"]
    assert container["image"] == GCP_TRAINER and container["commands"] == ["kaizen"]
    assert container["args"] == ["retrain", "/opt/kaizen/pipeline.py", "--data", "/data/in/latest.csv",
                                 "--champion", "/data/packages/iris/1.0.0", "--out", "/data/packages/candidates",
                                 "--cache", "/tmp/kaizen-cache", "--reject-ok"]
    assert {v["name"]: v["gcs"] for v in template["volumes"]} == {
        "data": {"bucket": "kaizen-train", "readOnly": True, "mountOptions": ["only-dir=iris"]},
        "packages": {"bucket": "kaizen-pkgs", "readOnly": False, "mountOptions": ["only-dir=store"]}}
    trainer_sa = template["serviceAccount"]
    grants = {(g.inputs["bucket"], g.inputs["role"], g.inputs["member"])
              for g in gcp_run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
              if g.name.startswith("retraining")}
    assert grants == {("kaizen-train", "roles/storage.objectViewer", f"serviceAccount:{trainer_sa}"),
                      ("kaizen-pkgs", "roles/storage.objectUser", f"serviceAccount:{trainer_sa}")}
    assert gcp_run.outputs["retrainingJob"] == job.inputs["name"] == "kaizen-iris-gcp-dev-retrain"


def test_gcp_scheduler_and_drift_workflow_run_the_job_as_the_invoker(gcp_run: Run) -> None:
    job = _named(gcp_run, "gcp:cloudrunv2/job:Job", "retraining-job").inputs["name"]
    (grant,) = gcp_run.of_type("gcp:cloudrunv2/jobIamMember:JobIamMember")
    assert (grant.inputs["name"], grant.inputs["role"]) == (job, "roles/run.invoker")
    invoker = _named(gcp_run, "gcp:serviceaccount/account:Account", "retraining-invoker").inputs["accountId"]
    invoker_email = f"{invoker}@kaizen-test.iam.gserviceaccount.com"
    assert grant.inputs["member"] == f"serviceAccount:{invoker_email}"
    (schedule,) = gcp_run.of_type("gcp:cloudscheduler/job:Job")
    assert schedule.inputs["schedule"] == "0 4 * * 1" and schedule.inputs["timeZone"] == "Etc/UTC"
    target = schedule.inputs["httpTarget"]
    assert target["uri"] == f"https://run.googleapis.com/v2/projects/kaizen-test/locations/europe-west4/jobs/{job}:run"
    assert target["oauthToken"]["serviceAccountEmail"] == invoker_email
    # drift: the drift policy (only) notifies the topic; Eventarc on that topic starts the workflow
    channel = _named(gcp_run, "gcp:monitoring/notificationChannel:NotificationChannel", "retraining-drift")
    topic = _named(gcp_run, "gcp:pubsub/topic:Topic", "retraining-drift")
    topic_id = _fake_state(topic.typ, topic.name, topic.inputs)["id"]
    assert channel.inputs["type"] == "pubsub" and channel.inputs["labels"] == {"topic": topic_id}
    channel_name = _fake_state(channel.typ, channel.name, channel.inputs)["name"]
    policies = {p.name: p.inputs["notificationChannels"]
                for p in gcp_run.of_type("gcp:monitoring/alertPolicy:AlertPolicy")}
    assert [n for n, channels in policies.items() if channel_name in channels] == ["monitoring-drift"]
    (publisher,) = gcp_run.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert publisher.inputs["role"] == "roles/pubsub.publisher" and publisher.inputs["member"] == \
        "serviceAccount:service-123456@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    workflow = gcp_run.one("gcp:workflows/workflow:Workflow")
    assert workflow.inputs["serviceAccount"] == invoker_email
    source = workflow.inputs["sourceContents"]
    assert f"name: projects/kaizen-test/locations/europe-west4/jobs/{job}" in source
    assert 'condition: ${notification.incident.state != "open"}' in source
    trigger = gcp_run.one("gcp:eventarc/trigger:Trigger")
    assert trigger.inputs["matchingCriterias"] == [{"attribute": "type",
                                                    "value": "google.cloud.pubsub.topic.v1.messagePublished"}]
    assert trigger.inputs["transport"] == {"pubsub": {"topic": topic_id}}
    workflow_id = _fake_state(workflow.typ, workflow.name, workflow.inputs)["id"]
    assert trigger.inputs["destination"] == {"workflow": workflow_id}
    (start,) = gcp_run.of_type("gcp:projects/iAMMember:IAMMember")
    assert start.inputs["role"] == "roles/workflows.invoker"
    assert start.inputs["member"] == f"serviceAccount:{trigger.inputs['serviceAccount']}"
    assert start.inputs["condition"]["expression"] == (
        f'resource.name == "projects/kaizen-test/locations/europe-west4/workflows/{workflow.inputs["name"]}"')


def test_gcp_stack_with_retraining_passes_the_policy_pack_and_checks_the_repository(gcp_run: Run) -> None:
    assert violations(gcp_run) == []
    cfg = load_stack_config("gcp-dev")
    other = {**GCP_RETRAINING, "image": "europe-docker.pkg.dev/other/repo/trainer@sha256:" + "2" * 64}
    with pytest.raises(Exception, match=r"kaizen:retraining\.image: .* is not in the platform stack's registry"):
        run_program("gcp-dev", {**cfg, "retraining": other})


def test_gcp_schedule_only_declares_no_drift_path() -> None:
    run = run_program("gcp-dev", {**load_stack_config("gcp-dev"), "retraining": {**GCP_RETRAINING, "onDrift": False}})
    types = {r.typ for r in run.resources}
    assert "gcp:cloudscheduler/job:Job" in types
    assert not types & {"gcp:workflows/workflow:Workflow", "gcp:eventarc/trigger:Trigger", "gcp:pubsub/topic:Topic"}


AZ_TRAINER = "kaizenazureplatform.azurecr.io/kaizen/iris-trainer@sha256:" + "3" * 64
AZ_ACCOUNT = "/subscriptions/0000/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/kzdata"
AZ_RETRAINING = {"image": AZ_TRAINER, "data": "https://kzdata.blob.core.windows.net/train/iris/latest.csv",
                 "packages": "https://kzdata.blob.core.windows.net/pkgs/store/", "schedule": "0 4 * * 1",
                 "timeoutMinutes": 90, "storageAccountId": AZ_ACCOUNT}
ROLES = "/subscriptions/0000/providers/Microsoft.Authorization/roleDefinitions/"


def _id(r: Recorded) -> str:
    return _fake_state(r.typ, r.name, r.inputs)["id"]


@pytest.fixture(scope="module")
def azure_run() -> Run:
    return run_program("azure-dev", {**load_stack_config("azure-dev"), "retraining": AZ_RETRAINING})


def test_azure_job_runs_the_trainer_by_digest_on_the_schedule(azure_run: Run) -> None:
    job = azure_run.one("azure-native:app:Job")
    assert job.inputs["jobName"] == "kz-iris-azure-dev-retrain"
    env = _named(azure_run, "azure-native:app:ManagedEnvironment", "endpoint-env")
    assert job.inputs["environmentId"] == _id(env)  # the stack's Container Apps environment
    conf = job.inputs["configuration"]
    assert conf["triggerType"] == "Schedule" and conf["replicaTimeout"] == 90 * 60 and conf["replicaRetryLimit"] == 0
    assert conf["scheduleTriggerConfig"] == {"cronExpression": "0 4 * * 1", "parallelism": 1,
                                             "replicaCompletionCount": 1}
    assert "manualTriggerConfig" not in conf
    uai = _id(_named(azure_run, "azure-native:managedidentity:UserAssignedIdentity", "retraining-identity-uai"))
    assert job.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [uai]}
    assert conf["registries"] == [{"server": "kaizenazureplatform.azurecr.io", "identity": uai}]
    (container,) = job.inputs["template"]["containers"]
    assert container["image"] == AZ_TRAINER and container["command"] == ["kaizen"]
    assert container["args"] == ["retrain-blob"]
    client = _fake_state("azure-native:managedidentity:UserAssignedIdentity", "retraining-identity-uai", {})["clientId"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "AZURE_CLIENT_ID": client, "KAIZEN_BLOB_ACCOUNT_URL": "https://kzdata.blob.core.windows.net",
        "KAIZEN_DATA_CONTAINER": "train", "KAIZEN_DATA_BLOB": "iris/latest.csv", "KAIZEN_PACKAGES_CONTAINER": "pkgs",
        "KAIZEN_CHAMPION_PREFIX": "store/iris/1.0.0/", "KAIZEN_CANDIDATES_PREFIX": "store/candidates/",
        "KAIZEN_PIPELINE": "/opt/kaizen/pipeline.py"}
    assert not any("secret" in str(e) or "Key" in e["name"] for e in container["env"])
    assert "volumes" not in job.inputs["template"]  # no Azure Files: blobs through the identity
    assert azure_run.outputs["retrainingJobId"] == _id(job)


def test_azure_trainer_identity_has_exactly_acrpull_and_the_two_container_roles(azure_run: Run) -> None:
    uai = _named(azure_run, "azure-native:managedidentity:UserAssignedIdentity", "retraining-identity-uai")
    principal = _fake_state(uai.typ, uai.name, uai.inputs)["principalId"]
    grants = {(r.inputs["scope"], r.inputs["roleDefinitionId"])
              for r in azure_run.of_type("azure-native:authorization:RoleAssignment")
              if r.inputs["principalId"] == principal}
    registry = platform_outputs()["organization/kaizen/azure-platform"]["registryId"]
    assert registry.endswith("/registries/kaizenazureplatform")
    containers = f"{AZ_ACCOUNT}/blobServices/default/containers"
    assert grants == {
        (registry, ROLES + "7f951dda-4ed3-4680-a7ca-43fe172d538d"),  # AcrPull
        (f"{containers}/train", ROLES + "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),  # Storage Blob Data Reader
        (f"{containers}/pkgs", ROLES + "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),  # Storage Blob Data Contributor
    }
    assert not azure_run.of_type("azure-native:storage:StorageAccount")  # the user's account, no keys listed


def test_azure_drift_alert_starts_exactly_this_job_with_a_start_only_role(azure_run: Run) -> None:
    job_id = _id(azure_run.one("azure-native:app:Job"))
    # the subscription's "Kaizen job starter" role (one action), created with the deployer role: none here
    assert not azure_run.of_type("azure-native:authorization:RoleDefinition")
    starter_role = starter_role_definition("0000")
    assert starter_role["Actions"] == ["Microsoft.App/jobs/start/action"] and starter_role["Id"] == STARTER_ROLE
    starter = _named(azure_run, "azure-native:managedidentity:UserAssignedIdentity", "retraining-starter")
    starter_state = _fake_state(starter.typ, starter.name, starter.inputs)
    (assignment,) = [r for r in azure_run.of_type("azure-native:authorization:RoleAssignment")
                     if r.inputs["principalId"] == starter_state["principalId"]]
    assert assignment.inputs["scope"] == job_id and assignment.inputs["roleDefinitionId"] == ROLES + STARTER_ROLE
    workflow = azure_run.one("azure-native:logic:Workflow")
    assert workflow.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [starter_state["id"]]}
    assert workflow.inputs["parameters"] == {"startIdentity": {"type": "String", "value": starter_state["id"]}}
    definition = workflow.inputs["definition"]
    assert definition["triggers"]["drift"]["type"] == "Request"
    fired = definition["actions"]["fired"]
    assert fired["expression"] == "@equals(triggerBody()?['data']?['essentials']?['monitorCondition'], 'Fired')"
    assert fired["actions"]["start_job"]["inputs"] == {
        "method": "POST", "uri": f"https://management.azure.com{job_id}/start?api-version=2024-03-01",
        "authentication": {"type": "ManagedServiceIdentity", "identity": "@parameters('startIdentity')",
                           "audience": "https://management.azure.com/"}}
    group = _named(azure_run, "azure-native:monitor:ActionGroup", "retraining-drift")
    receivers = group.inputs["logicAppReceivers"]  # a secret: the callback URL carries its SAS signature
    assert receivers.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270"
    (receiver,) = receivers["value"]
    assert receiver["resourceId"] == _id(workflow) and receiver["useCommonAlertSchema"] is True
    assert not any(k.endswith("Receivers") and k != "logicAppReceivers" for k in group.inputs)
    # the retraining action group is on the drift alert only; the stack's group stays on it too
    rules = {r.name: r.inputs["actions"]["actionGroups"]
             for r in azure_run.of_type("azure-native:monitor:ScheduledQueryRule")}
    assert [n for n, groups in rules.items() if _id(group) in groups] == ["alerts-drift"]
    assert len(rules["alerts-drift"]) == 2


def test_azure_stack_with_retraining_passes_the_policy_pack_and_the_cloud_rules(azure_run: Run) -> None:
    assert violations(azure_run) == []
    declared = [Res(r.typ, r.name, r.inputs, r.urn, r.deps) for r in azure_run.custom]
    assert [str(v) for v in evaluate(declared, all_rules())] == []


def test_the_starter_role_meets_the_custom_role_rule_and_the_rule_catches_bad_ones() -> None:
    (rule,) = [r for r in all_rules() if r.id == "azure-custom-role-scope"]
    role = starter_role_definition("0000")

    def declared(scopes: list[str], actions: list[str]) -> list[Res]:
        return [Res("azure-native:authorization:RoleDefinition", "starter",
                    {"assignableScopes": scopes, "permissions": [{"actions": actions}]})]

    assert evaluate(declared(role["AssignableScopes"], role["Actions"]), [rule]) == []
    assert evaluate(declared(["/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/jobs/j"],
                             role["Actions"]), [rule])  # a resource is no assignable scope
    assert evaluate(declared(role["AssignableScopes"], ["Microsoft.App/jobs/*"]), [rule])


@pytest.mark.parametrize(("typ", "path", "value", "rule"), [
    ("azure-native:app:Job", ("configuration", "scheduleTriggerConfig", "cronExpression"), "0 0 4 * * 1",
     "azure-job-trigger"),  # six fields (seconds): not the format Container Apps jobs take
    ("azure-native:app:Job", ("configuration", "replicaTimeout"), 0, "azure-job-trigger"),
    ("azure-native:app:Job", ("configuration", "triggerType"), "Manual", "azure-job-trigger"),  # keeps the cron
])
def test_azure_job_rules_catch_bad_values(azure_run: Run, typ: str, path: tuple[str, ...], value: Any,
                                          rule: str) -> None:
    import copy

    (rule_,) = [r for r in all_rules() if r.id == rule]
    declared = [Res(r.typ, r.name, r.inputs, r.urn, r.deps) for r in azure_run.custom]
    i = next(i for i, r in enumerate(declared) if r.typ == typ)
    props = copy.deepcopy(dict(declared[i].props))
    cur: Any = props
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    declared[i] = Res(typ, declared[i].name, props)
    assert evaluate(declared, [rule_]), f"{rule} did not catch {path} = {value!r}"


def test_azure_manual_job_without_schedule_and_no_drift_path_without_on_drift() -> None:
    cfg = load_stack_config("azure-dev")
    run = run_program("azure-dev", {**cfg, "retraining": {**AZ_RETRAINING, "schedule": None}})
    conf = run.one("azure-native:app:Job").inputs["configuration"]
    assert conf["triggerType"] == "Manual" and "scheduleTriggerConfig" not in conf
    assert conf["manualTriggerConfig"] == {"parallelism": 1, "replicaCompletionCount": 1}
    run = run_program("azure-dev", {**cfg, "retraining": {**AZ_RETRAINING, "onDrift": False}})
    types = {r.typ for r in run.resources}
    assert "azure-native:app:Job" in types
    assert "azure-native:logic:Workflow" not in types
    assert [r.name for r in run.of_type("azure-native:monitor:ActionGroup")] == ["observability-actions"]
    assert all(len(r.inputs["actions"]["actionGroups"]) == 1
               for r in run.of_type("azure-native:monitor:ScheduledQueryRule"))


@pytest.mark.parametrize(("change", "message"), [
    ({"storageAccountId": None}, "storageAccountId missing"),
    ({"storageAccountId": AZ_ACCOUNT.replace("kzdata", "other")}, "data is in storage account 'kzdata', but"),
    ({"storageAccountId": "kzdata"}, "storage_account_id|storageAccountId"),
    ({"data": "s3://kaizen-train/iris/latest.csv"}, "data is aws storage but packages is azure"),
])
def test_azure_bad_retraining_config_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    from infra.common.config import parse_config

    block = {k: v for k, v in {**AZ_RETRAINING, **change}.items() if v is not None}
    with pytest.raises(Exception, match=message):
        parse_config({**load_stack_config("azure-dev"), "retraining": block}, "azure-dev")


def test_azure_retraining_needs_container_apps_and_the_platform_registry() -> None:
    from infra.common.config import parse_config

    cfg = load_stack_config("azure-dev")
    ml = {**cfg, "azure": {**cfg["azure"], "compute": "ml", "minInstances": 1, "mlTraffic": {}}}
    with pytest.raises(Exception, match="kaizen:retraining: on Azure the trainer runs as a Container Apps job"):
        parse_config({**ml, "retraining": AZ_RETRAINING}, "azure-dev")
    other = {**AZ_RETRAINING, "image": "other.azurecr.io/kaizen/iris-trainer@sha256:" + "3" * 64}
    with pytest.raises(Exception, match=r"kaizen:retraining\.image: .* is not in the platform stack's registry"):
        run_program("azure-dev", {**cfg, "retraining": other})


@pytest.mark.parametrize("name", ["a", "1job", "Job", "job-", "a--b", "x" * 33])
def test_azure_job_names_the_service_refuses_are_refused(name: str) -> None:
    from infra.azure.jobs import check_job_name

    with pytest.raises(ValueError, match="Container Apps job name"):
        check_job_name(name)
    check_job_name("kz-iris-azure-dev-retrain")
