"""Cloud batch components under Pulumi mocks: the properties a real deployment needs."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from infra.batch_config import BatchSettings
from tests.infra.conftest import Recorded, RecordingMocks, RecordingMonitor

IMAGE = "europe-docker.pkg.dev/kaizen-test/models/iris@sha256:" + "0" * 64


def _run(declare: Any) -> list[Recorded]:
    mocks = RecordingMocks({})
    pulumi.runtime.set_mocks(mocks, project="kaizen", stack="gcp-dev", preview=False, monitor=RecordingMonitor(mocks))

    @pulumi.runtime.test
    def _main() -> Any:
        return declare()

    _main()
    return mocks.resources


def _gcp(schedule: str | None) -> list[Recorded]:
    from infra.gcp.batch import CloudRunBatchJob, CloudRunBatchJobArgs
    from infra.gcp.jobs import RegistryAccess

    settings = BatchSettings.model_validate({"input": "gs://raw-data/daily/", "output": "gs://scores/iris/",
                                             "inputs": ["day.csv", "day2.parquet"], "schedule": schedule,
                                             "chunkRows": 5000})

    def declare() -> Any:
        job = CloudRunBatchJob("batch", CloudRunBatchJobArgs(
            project="kaizen-test", region="europe-west1", job_name="iris-batch", image=IMAGE, settings=settings,
            registry=RegistryAccess(project="kaizen-test", location="europe", name="models",
                                    project_number="123456")))
        return job.job_name

    return _run(declare)


def test_gcp_cloud_run_job_reads_and_writes_only_its_buckets() -> None:
    resources = _gcp("0 3 * * *")
    by_type: dict[str, list[Recorded]] = {}
    for r in resources:
        by_type.setdefault(r.typ, []).append(r)
    (job,) = by_type["gcp:cloudrunv2/job:Job"]
    template = job.inputs["template"]["template"]
    (container,) = template["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["batch", "/data/in/day.csv", "/data/in/day2.parquet", "--out",
                                 "/data/out/{execution}", "--chunk-rows", "5000"]
    volumes = {v["name"]: v["gcs"] for v in template["volumes"]}
    assert volumes == {"input": {"bucket": "raw-data", "readOnly": True, "mountOptions": ["only-dir=daily"]},
                       "output": {"bucket": "scores", "readOnly": False, "mountOptions": ["only-dir=iris"]}}
    assert template["maxRetries"] == 3 and template["timeout"] == "3600s"
    runtime_sa = template["serviceAccount"]
    grants = {(g.inputs["bucket"], g.inputs["role"], g.inputs["member"])
              for g in by_type["gcp:storage/bucketIAMMember:BucketIAMMember"]}
    assert grants == {("raw-data", "roles/storage.objectViewer", f"serviceAccount:{runtime_sa}"),
                      ("scores", "roles/storage.objectUser", f"serviceAccount:{runtime_sa}")}
    (schedule,) = by_type["gcp:cloudscheduler/job:Job"]
    target = schedule.inputs["httpTarget"]
    assert schedule.inputs["schedule"] == "0 3 * * *" and target["httpMethod"] == "POST"
    assert target["uri"] == "https://run.googleapis.com/v2/projects/kaizen-test/locations/europe-west1/jobs/iris-batch:run"
    (invoke,) = by_type["gcp:cloudrunv2/jobIamMember:JobIamMember"]
    assert invoke.inputs["role"] == "roles/run.invoker" and invoke.inputs["name"] == "iris-batch"
    assert invoke.inputs["member"] == f"serviceAccount:{target['oauthToken']['serviceAccountEmail']}"
    assert invoke.inputs["member"] != f"serviceAccount:{runtime_sa}"  # the scheduler cannot read data
    (reader,) = by_type["gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"]
    assert reader.inputs["member"].endswith("@serverless-robot-prod.iam.gserviceaccount.com")
    for r in resources:  # no project-wide role, nothing but the two buckets and the job
        assert "projectIamMember" not in r.typ and "*" not in str(r.inputs.get("role", ""))
    parents = {r.parent for r in resources if r.custom}
    assert len(parents) == 2 and all("CloudRunBatchJob" in p or "RuntimeIdentity" in p for p in parents)


def test_gcp_job_without_schedule_has_no_scheduler() -> None:
    types = {r.typ for r in _gcp(None)}
    assert "gcp:cloudrunv2/job:Job" in types and "gcp:cloudscheduler/job:Job" not in types


@pytest.mark.parametrize("env", [{"CLOUD_RUN_EXECUTION": "iris-batch-abc12"}, {"KAIZEN_BATCH_RUN": "../x"}])
def test_execution_placeholder(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from model_packages.batch.entry import execution_id

    for name in ("KAIZEN_BATCH_RUN", "CLOUD_RUN_EXECUTION", "CONTAINER_APP_JOB_EXECUTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert execution_id() == ("iris-batch-abc12" if "CLOUD_RUN_EXECUTION" in env else "run")


def test_aws_processing_job_state_machine_and_schedule_are_least_privilege() -> None:
    import json

    from infra.aws.batch import ProcessingBatchJob, ProcessingBatchJobArgs
    from infra.aws.jobs import aws_cron

    repo = "arn:aws:ecr:eu-west-1:123456789012:repository/kaizen/iris"
    settings = BatchSettings.model_validate({"input": "s3://raw/daily/", "output": "s3://scores/iris/",
                                             "inputs": ["day.csv"], "schedule": "30 2 * * 1-5"})

    def declare() -> Any:
        return ProcessingBatchJob("batch", ProcessingBatchJobArgs(
            account_id="123456789012", region="eu-west-1", job_prefix="iris-batch",
            image=repo.replace("arn:aws:ecr:eu-west-1:123456789012:repository/", "123456789012.dkr.ecr.eu-west-1."
                               "amazonaws.com/") + "@sha256:" + "0" * 64,
            repository_arn=repo, settings=settings)).state_machine_arn

    resources = _run(declare)
    policies = {r.name: json.loads(r.inputs["policy"]) for r in resources if r.typ == "aws:iam/rolePolicy:RolePolicy"}
    processing = {s["Sid"]: s for s in policies["batch-processing"]["Statement"]}
    assert processing["ReadInputs"]["Resource"] == ["arn:aws:s3:::raw/daily/day.csv"]
    assert processing["ListInputs"]["Condition"] == {"StringEquals": {"s3:prefix": ["daily/day.csv"]}}
    assert processing["WriteScores"]["Resource"] == ["arn:aws:s3:::scores/iris/iris-batch/*"]
    assert processing["ReadScores"]["Resource"] == ["arn:aws:s3:::scores/iris/iris-batch/*"]  # to resume
    assert processing["ListScores"]["Condition"] == {"StringLike": {"s3:prefix": ["iris/iris-batch/*"]}}
    assert processing["PullModelImage"]["Resource"] == [repo]
    wildcards = [s["Sid"] for p in policies.values() for s in p["Statement"] if s["Resource"] == "*"]
    assert wildcards == ["EcrAuthToken"]  # the one action without resource-level permissions
    states = {s["Sid"]: s for s in policies["batch-states"]["Statement"]}
    assert states["RunProcessingJobs"]["Resource"] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/iris-batch-*"]
    assert states["PassProcessingRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    (start,) = policies["batch-scheduler"]["Statement"]
    assert start["Action"] == ["states:StartExecution"] and len(start["Resource"]) == 1
    (machine,) = [r for r in resources if r.typ == "aws:sfn/stateMachine:StateMachine"]
    task = json.loads(machine.inputs["definition"])["States"]["Score"]
    assert task["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    params = task["Parameters"]
    assert params["AppSpecification"]["ContainerArguments"] == [
        "batch", "/opt/ml/processing/input/0/day.csv", "--out", "/opt/ml/processing/output", "--chunk-rows", "10000",
        "--resume-from", "s3://scores/iris/iris-batch/{execution}/"]
    # the execution's name, which a retry (or a redrive) keeps: a new job resumes the killed one's prefix
    assert params["Environment"] == {"KAIZEN_BATCH_RUN.$": "$$.Execution.Name"}
    assert task["Retry"][0]["ErrorEquals"] == ["States.TaskFailed"] and task["Retry"][0]["MaxAttempts"] >= 1
    assert params["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://raw/daily/day.csv"
    assert params["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri.$"].startswith(
        "States.Format('s3://scores/iris/iris-batch/{}/'")
    (schedule,) = [r for r in resources if r.typ == "aws:scheduler/schedule:Schedule"]
    assert schedule.inputs["scheduleExpression"] == "cron(30 2 ? * 2-6 *)"
    assert aws_cron("0 3 * * *") == "cron(0 3 * * ? *)"
    for r in resources:
        if r.typ == "aws:iam/role:Role":
            (principal,) = json.loads(r.inputs["assumeRolePolicy"])["Statement"]
            assert principal["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_gcp_stack_declares_the_job_from_stack_config() -> None:
    from tests.infra.conftest import load_stack_config, run_program

    cfg = load_stack_config("gcp-dev")
    cfg["gcp"] = {**cfg["gcp"], "batch": {"input": "gs://raw/in/", "output": "gs://scores/out/",
                                          "inputs": ["day.csv"], "schedule": "0 3 * * *"}}
    run = run_program("gcp-dev", cfg)
    job = run.one("gcp:cloudrunv2/job:Job")
    service = run.one("gcp:cloudrunv2/service:Service")
    assert job.inputs["template"]["template"]["containers"][0]["image"] == \
        service.inputs["template"]["containers"][0]["image"]
    assert run.outputs["batchJob"] == job.inputs["name"]
    cfg["gcp"]["batch"] = {**cfg["gcp"]["batch"], "input": "s3://raw/in/", "output": "s3://scores/out/"}
    with pytest.raises(Exception, match=r"kaizen:gcp.*target is 'gcp'"):
        run_program("gcp-dev", cfg)


def test_local_stack_declares_the_job_from_stack_config(tmp_path: Any) -> None:
    from tests.infra.conftest import load_stack_config, run_program

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "day.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n")
    cfg = load_stack_config("local")
    cfg["local"] = {**cfg["local"], "batch": {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
                                              "inputs": ["day.csv"], "chunkRows": 500}}
    run = run_program("local", cfg)
    (job,) = [r for r in run.resources if r.name == "batch-run"]
    assert job.inputs["input_dir"] == str(tmp_path / "in") and job.inputs["inputs"] == ["day.csv"]
    assert job.inputs["chunk_rows"] == 500 and len(job.inputs["fingerprint"]) == 64
    assert job.parent.endswith("kaizen:local:BatchJob::batch")
    cfg["local"]["batch"] = {**cfg["local"]["batch"], "inputs": ["missing.csv"]}
    with pytest.raises(Exception, match=r"kaizen:local\.batch\.inputs: missing\.csv: no such file"):
        run_program("local", cfg)


def test_aws_stack_declares_the_processing_job_from_stack_config() -> None:
    import json

    from tests.infra.conftest import load_stack_config, run_program

    cfg = load_stack_config("aws-dev")
    cfg["aws"] = {**cfg["aws"], "batch": {"input": "s3://raw/in/", "output": "s3://scores/out/",
                                          "inputs": ["day.csv"], "schedule": "0 3 * * *"}}
    run = run_program("aws-dev", cfg)
    machine = run.one("aws:sfn/stateMachine:StateMachine")
    model = run.one("aws:sagemaker/model:Model")
    params = json.loads(machine.inputs["definition"])["States"]["Score"]["Parameters"]
    assert params["AppSpecification"]["ImageUri"] == model.inputs["primaryContainer"]["image"]
    policies = {r.name: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/rolePolicy:RolePolicy")}
    (jobs,) = [s for s in policies["batch-states"]["Statement"] if s["Sid"] == "RunProcessingJobs"]
    (arn,) = jobs["Resource"]
    assert arn.startswith("arn:aws:sagemaker:") and ":123456789012:processing-job/" in arn
    run.one("aws:scheduler/schedule:Schedule")


AZ_ACCOUNT = "/subscriptions/0000/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/kzdata"
AZ_BATCH = {"input": "https://kzdata.blob.core.windows.net/raw/daily/", "inputs": ["day.csv", "day2.parquet"],
            "output": "https://kzdata.blob.core.windows.net/scores/iris/", "schedule": "0 3 * * *",
            "chunkRows": 5000, "timeoutMinutes": 45, "storageAccountId": AZ_ACCOUNT}


def _azure_batch(batch: dict[str, Any]) -> Any:
    from tests.infra.conftest import load_stack_config, run_program

    cfg = load_stack_config("azure-dev")
    return run_program("azure-dev", {**cfg, "azure": {**cfg["azure"], "batch": batch}})


def test_azure_container_apps_job_scores_blobs_with_its_own_identity() -> None:
    from tests.infra.conftest import _fake_state, platform_outputs

    run = _azure_batch(AZ_BATCH)
    job = run.one("azure-native:app:Job")
    app = run.one("azure-native:app:ContainerApp")
    env = run.one("azure-native:app:ManagedEnvironment")
    assert job.inputs["jobName"] == "kz-iris-azure-dev-batch"
    assert job.inputs["environmentId"] == _fake_state(env.typ, env.name, env.inputs)["id"]
    conf = job.inputs["configuration"]
    assert conf["triggerType"] == "Schedule" and conf["replicaTimeout"] == 45 * 60
    assert conf["scheduleTriggerConfig"] == {"cronExpression": "0 3 * * *", "parallelism": 1,
                                             "replicaCompletionCount": 1}
    (container,) = job.inputs["template"]["containers"]
    # the stack's model image, by digest, its `batch-blob` entry point
    assert container["image"] == app.inputs["template"]["containers"][0]["image"]
    assert "@sha256:" in container["image"] and "command" not in container
    assert container["args"] == ["batch-blob", "day.csv", "day2.parquet", "--chunk-rows", "5000"]
    (uai,) = [r for r in run.of_type("azure-native:managedidentity:UserAssignedIdentity")
              if r.name == "batch-identity-uai"]
    state = _fake_state(uai.typ, uai.name, uai.inputs)
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "AZURE_CLIENT_ID": state["clientId"], "KAIZEN_BLOB_ACCOUNT_URL": "https://kzdata.blob.core.windows.net",
        "KAIZEN_INPUT_CONTAINER": "raw", "KAIZEN_INPUT_PREFIX": "daily/", "KAIZEN_OUTPUT_CONTAINER": "scores",
        "KAIZEN_OUTPUT_PREFIX": "iris/"}
    assert job.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [state["id"]]}
    assert conf["registries"] == [{"server": "kaizenazureplatform.azurecr.io", "identity": state["id"]}]
    grants = {(r.inputs["scope"], r.inputs["roleDefinitionId"].rsplit("/", 1)[-1])
              for r in run.of_type("azure-native:authorization:RoleAssignment")
              if r.inputs["principalId"] == state["principalId"]}
    containers = f"{AZ_ACCOUNT}/blobServices/default/containers"
    registry = platform_outputs()["organization/kaizen/azure-platform"]["registryId"]
    assert grants == {
        (registry, "7f951dda-4ed3-4680-a7ca-43fe172d538d"),  # AcrPull
        (f"{containers}/raw", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"),  # Storage Blob Data Reader
        (f"{containers}/scores", "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),  # Storage Blob Data Contributor
    }
    assert run.outputs["batchJobId"] == _fake_state(job.typ, job.name, job.inputs)["id"]
    from infra.cloud_rules import all_rules
    from infra.common.rules import Res, evaluate
    from tests.infra.test_policy import violations

    assert violations(run) == []
    declared = [Res(r.typ, r.name, r.inputs, r.urn, r.deps) for r in run.custom]
    assert [str(v) for v in evaluate(declared, all_rules())] == []


def test_azure_batch_without_schedule_is_a_manual_job() -> None:
    conf = _azure_batch({**AZ_BATCH, "schedule": None, "probabilities": True}).one("azure-native:app:Job")
    assert conf.inputs["configuration"]["triggerType"] == "Manual"
    assert conf.inputs["configuration"]["manualTriggerConfig"] == {"parallelism": 1, "replicaCompletionCount": 1}
    assert conf.inputs["template"]["containers"][0]["args"][-1] == "--probabilities"


@pytest.mark.parametrize(("change", "message"), [
    ({"storageAccountId": None}, "storageAccountId missing"),
    ({"storageAccountId": AZ_ACCOUNT.replace("kzdata", "other")}, "input is in storage account 'kzdata'"),
    ({"input": "s3://raw/in/"}, "input is aws storage but output is azure"),
])
def test_azure_bad_batch_config_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        _azure_batch({k: v for k, v in {**AZ_BATCH, **change}.items() if v is not None})


def test_azure_batch_needs_container_apps() -> None:
    from infra.common.config import parse_config
    from tests.infra.conftest import load_stack_config

    cfg = load_stack_config("azure-dev")
    ml = {**cfg, "azure": {**cfg["azure"], "compute": "ml", "minInstances": 1, "mlTraffic": {}, "batch": AZ_BATCH}}
    with pytest.raises(Exception, match="batch runs as a Container Apps job"):
        parse_config(ml, "azure-dev")
