"""The one Cloud Run Job shape batch scoring (batch.py) and retraining (retraining.py) share.

A Cloud Run Job of one task, run as its own service account (RuntimeIdentity: the image is pulled
by the Cloud Run service agent, Artifact Registry Reader on the platform repository) holding one
role per bucket it reads or writes, with those buckets mounted as Cloud Storage volumes
(`only-dir`). Cloud Scheduler runs it on a cron through the Admin API `jobs.run`, with the OAuth
token of an invoker account that holds `roles/run.invoker` on this one job
(https://cloud.google.com/run/docs/execute/jobs-on-schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from .identity import RuntimeIdentity, RuntimeIdentityArgs


@dataclass(frozen=True)
class BucketMount:
    """A bucket (or one directory of it) mounted at `path`; the job identity gets `role` on the bucket."""

    name: str  # the volume's name
    grant: str  # the grant's resource: `<component>-<grant>`
    bucket: str
    directory: str  # "" for the whole bucket
    path: str
    read_only: bool

    @property
    def role(self) -> str:
        # objectUser: the batch manifest and the package store are rewritten, so delete too
        return "roles/storage.objectViewer" if self.read_only else "roles/storage.objectUser"


@dataclass(frozen=True)
class RegistryAccess:
    """The platform repository the Cloud Run service agent pulls from (platform stack outputs)."""

    project: pulumi.Input[str]
    location: pulumi.Input[str]
    name: pulumi.Input[str]
    project_number: pulumi.Input[str]


@dataclass(frozen=True)
class CloudRunJobArgs:
    project: str
    region: str
    job_name: str
    account_id: str  # the job's service account
    registry: RegistryAccess
    image: pulumi.Input[str]
    args: list[str]
    mounts: tuple[BucketMount, ...]
    timeout_minutes: int
    max_retries: int
    cpu: str
    memory: str
    commands: list[str] | None = None  # None: the image's entry point


@dataclass(frozen=True)
class CloudRunJob:
    job: gcp.cloudrunv2.Job
    identity: RuntimeIdentity


def cloud_run_job(name: str, args: CloudRunJobArgs, parent: pulumi.Resource) -> CloudRunJob:
    """Declare, under `parent`, the job's identity (`<name>-identity`), bucket grants and job (`<name>-job`)."""
    child = pulumi.ResourceOptions(parent=parent)
    identity = RuntimeIdentity(f"{name}-identity", RuntimeIdentityArgs(
        project=args.project, account_id=args.account_id, repository_project=args.registry.project,
        repository_location=args.registry.location, repository_name=args.registry.name,
        project_number=args.registry.project_number), child)
    grants = [
        gcp.storage.BucketIAMMember(f"{name}-{m.grant}", gcp.storage.BucketIAMMemberArgs(
            bucket=m.bucket, role=m.role, member=identity.member), opts=child)
        for m in args.mounts
    ]
    job = gcp.cloudrunv2.Job(f"{name}-job", gcp.cloudrunv2.JobArgs(
        project=args.project, location=args.region, name=args.job_name, deletion_protection=False,
        template=gcp.cloudrunv2.JobTemplateArgs(
            task_count=1, parallelism=1,
            template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                service_account=identity.email, timeout=f"{args.timeout_minutes * 60}s", max_retries=args.max_retries,
                volumes=[gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(
                    name=m.name, gcs=gcp.cloudrunv2.JobTemplateTemplateVolumeGcsArgs(
                        bucket=m.bucket, read_only=m.read_only,
                        mount_options=[f"only-dir={m.directory}"] if m.directory else None))
                    for m in args.mounts],
                containers=[gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                    image=args.image, commands=args.commands, args=args.args,
                    resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                        limits={"cpu": args.cpu, "memory": args.memory}),
                    volume_mounts=[gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(
                        name=m.name, mount_path=m.path) for m in args.mounts],
                )],
            ),
        ),
    ), opts=pulumi.ResourceOptions(parent=parent, depends_on=grants))
    return CloudRunJob(job, identity)


@dataclass(frozen=True)
class JobInvoker:
    account: gcp.serviceaccount.Account
    grant: gcp.cloudrunv2.JobIamMember  # roles/run.invoker on the job


def job_invoker(name: str, args: CloudRunJobArgs, job: gcp.cloudrunv2.Job, account_id: str, display_name: str,
                parent: pulumi.Resource) -> JobInvoker:
    """A service account (`<name>-invoker`) that may run this one job and nothing else."""
    child = pulumi.ResourceOptions(parent=parent)
    account = gcp.serviceaccount.Account(f"{name}-invoker", gcp.serviceaccount.AccountArgs(
        project=args.project, account_id=account_id, display_name=display_name), opts=child)
    grant = gcp.cloudrunv2.JobIamMember(f"{name}-invoker-run", gcp.cloudrunv2.JobIamMemberArgs(
        project=args.project, location=args.region, name=job.name, role="roles/run.invoker",
        member=account.email.apply(lambda e: f"serviceAccount:{e}")), opts=child)
    return JobInvoker(account, grant)


def job_schedule(name: str, args: CloudRunJobArgs, job: gcp.cloudrunv2.Job, invoker: JobInvoker, cron: str,
                 time_zone: str, parent: pulumi.Resource) -> gcp.cloudscheduler.Job:
    """Cloud Scheduler (`<name>-schedule`) running the job on `cron` as the invoker."""
    return gcp.cloudscheduler.Job(f"{name}-schedule", gcp.cloudscheduler.JobArgs(
        project=args.project, region=args.region, schedule=cron, time_zone=time_zone, attempt_deadline="30s",
        http_target=gcp.cloudscheduler.JobHttpTargetArgs(
            http_method="POST",
            uri=job.name.apply(lambda n: f"https://run.googleapis.com/v2/projects/{args.project}/locations/"
                                         f"{args.region}/jobs/{n}:run"),
            oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                service_account_email=invoker.account.email, scope="https://www.googleapis.com/auth/cloud-platform"),
        ),
    ), opts=pulumi.ResourceOptions(parent=parent, depends_on=[invoker.grant]))
