"""Batch scoring on GCP: the model image as a Cloud Run Job over Cloud Storage, on a schedule.

- the job runs `IMAGE batch /data/in/<file>... --out /data/out/{execution}` with the input prefix
  mounted read-only and the output prefix read-write (Cloud Storage volumes, `only-dir`), so each
  execution writes its own directory and a retried task resumes it (`maxRetries`);
- its own service account reads the input bucket (`roles/storage.objectViewer`) and writes the
  output bucket (`roles/storage.objectUser`: the manifest is rewritten, so delete too), nothing else;
  the image is pulled by the Cloud Run service agent (Artifact Registry Reader, as for the service);
- with a schedule, Cloud Scheduler calls the Cloud Run Admin API `jobs.run` with an OAuth token of
  an invoker account that holds `roles/run.invoker` on this one job
  (https://cloud.google.com/run/docs/execute/jobs-on-schedule); without one, executions are
  triggered (`gcloud run jobs execute`, Workflows, Eventarc).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.batch_config import BatchSettings, bucket_and_prefix
from infra.gcp.identity import RuntimeIdentity, RuntimeIdentityArgs

IN, OUT = "/data/in", "/data/out"


@dataclass(frozen=True)
class CloudRunBatchJobArgs:
    project: str
    region: str
    job_name: str
    image: pulumi.Input[str]
    settings: BatchSettings
    repository_project: pulumi.Input[str]
    repository_location: pulumi.Input[str]
    repository_name: pulumi.Input[str]
    project_number: pulumi.Input[str]
    cpu: str = "2"
    memory: str = "2Gi"
    time_zone: str = "Etc/UTC"


def _volume(name: str, location: str, read_only: bool) -> gcp.cloudrunv2.JobTemplateTemplateVolumeArgs:
    bucket, prefix = bucket_and_prefix(location)
    options = [f"only-dir={prefix.rstrip('/')}"] if prefix else []
    return gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(
        name=name, gcs=gcp.cloudrunv2.JobTemplateTemplateVolumeGcsArgs(
            bucket=bucket, read_only=read_only, mount_options=options or None))


def job_args(settings: BatchSettings) -> list[str]:
    args = ["batch", *(f"{IN}/{n}" for n in settings.inputs), "--out", f"{OUT}/{{execution}}",
            "--chunk-rows", str(settings.chunk_rows)]
    return [*args, "--probabilities"] if settings.probabilities else args


class CloudRunBatchJob(pulumi.ComponentResource):
    job_name: pulumi.Output[str]
    service_account: pulumi.Output[str]

    def __init__(self, name: str, args: CloudRunBatchJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:CloudRunBatchJob", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        identity = RuntimeIdentity(f"{name}-identity", RuntimeIdentityArgs(
            project=args.project, account_id=f"{args.job_name[:24]}-job", repository_project=args.repository_project,
            repository_location=args.repository_location, repository_name=args.repository_name,
            project_number=args.project_number), child)
        in_bucket, _ = bucket_and_prefix(s.input)
        out_bucket, _ = bucket_and_prefix(s.output)
        grants = [
            gcp.storage.BucketIAMMember(f"{name}-read-input", gcp.storage.BucketIAMMemberArgs(
                bucket=in_bucket, role="roles/storage.objectViewer", member=identity.member), opts=child),
            gcp.storage.BucketIAMMember(f"{name}-write-output", gcp.storage.BucketIAMMemberArgs(
                bucket=out_bucket, role="roles/storage.objectUser", member=identity.member), opts=child),
        ]
        job = gcp.cloudrunv2.Job(f"{name}-job", gcp.cloudrunv2.JobArgs(
            project=args.project, location=args.region, name=args.job_name, deletion_protection=False,
            template=gcp.cloudrunv2.JobTemplateArgs(
                task_count=1, parallelism=1,
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=identity.email, timeout=f"{s.timeout_minutes * 60}s", max_retries=3,
                    volumes=[_volume("input", s.input, True), _volume("output", s.output, False)],
                    containers=[gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                        image=args.image, args=job_args(s),
                        resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                            limits={"cpu": args.cpu, "memory": args.memory}),
                        volume_mounts=[
                            gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(name="input", mount_path=IN),
                            gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(name="output", mount_path=OUT),
                        ],
                    )],
                ),
            ),
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        if s.schedule is not None:
            invoker = gcp.serviceaccount.Account(f"{name}-invoker", gcp.serviceaccount.AccountArgs(
                project=args.project, account_id=f"{args.job_name[:22]}-sched",
                display_name="Kaizen batch scheduler"), opts=child)
            invoker_member = invoker.email.apply(lambda e: f"serviceAccount:{e}")
            run_grant = gcp.cloudrunv2.JobIamMember(f"{name}-invoker-run", gcp.cloudrunv2.JobIamMemberArgs(
                project=args.project, location=args.region, name=job.name, role="roles/run.invoker",
                member=invoker_member), opts=child)
            gcp.cloudscheduler.Job(f"{name}-schedule", gcp.cloudscheduler.JobArgs(
                project=args.project, region=args.region, schedule=s.schedule, time_zone=args.time_zone,
                attempt_deadline="30s",
                http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    http_method="POST",
                    uri=job.name.apply(lambda n: f"https://run.googleapis.com/v2/projects/{args.project}/locations/"
                                                 f"{args.region}/jobs/{n}:run"),
                    oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                        service_account_email=invoker.email,
                        scope="https://www.googleapis.com/auth/cloud-platform"),
                ),
            ), opts=pulumi.ResourceOptions(parent=self, depends_on=[run_grant]))
        self.job_name = job.name
        self.service_account = identity.email
        self.register_outputs({"job_name": self.job_name, "service_account": self.service_account})
