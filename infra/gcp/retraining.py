"""Retraining on GCP: the trainer image as a Cloud Run Job, run by Cloud Scheduler on a cron and by
the drift alert policy's Pub/Sub notification.

- the job runs `kaizen retrain` (trainer_args) with the data object's directory mounted read-only
  and the package store read-write (Cloud Storage volumes, `only-dir`): the champion is the
  deployed <packages><model>/<version>/, the candidate goes to <packages>candidates/;
- its own service account reads the data bucket (`roles/storage.objectViewer`) and writes the
  package bucket (`roles/storage.objectUser`), nothing else; the image is pulled by the Cloud Run
  service agent (Artifact Registry Reader on the platform repository);
- a dedicated invoker service account holds `roles/run.invoker` on this one job: Cloud Scheduler
  calls the Admin API `jobs.run` with its OAuth token, and the drift Workflow runs as it;
- drift: a Pub/Sub topic is the drift alert policy's extra notification channel (the Monitoring
  notification agent may publish to it, nothing else can); an Eventarc trigger on that topic starts
  a Workflow that runs the job when the incident opens (a closing incident is ignored). Eventarc
  cannot target a Cloud Run *job*, and Workflows roles exist only at project level
  (https://cloud.google.com/workflows/docs/access-control), so the trigger's own service account gets
  `roles/workflows.invoker` with an IAM condition naming this one workflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.batch_config import bucket_and_prefix
from infra.gcp.identity import RuntimeIdentity, RuntimeIdentityArgs
from infra.retraining_config import RetrainingSettings, trainer_args

DATA, PACKAGES = "/data/in", "/data/packages"
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class CloudRunRetrainingArgs:
    project: str
    region: str
    job_name: str  # ≤ 40 characters: account ids derive from it
    model: str
    version: str  # the deployed version: the champion
    settings: RetrainingSettings
    image: pulumi.Input[str]  # settings.image, checked to be in the platform repository
    repository_project: pulumi.Input[str]
    repository_location: pulumi.Input[str]
    repository_name: pulumi.Input[str]
    project_number: pulumi.Input[str]
    cpu: str = "2"
    memory: str = "4Gi"


def _volume(name: str, bucket: str, directory: str, read_only: bool) -> gcp.cloudrunv2.JobTemplateTemplateVolumeArgs:
    return gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(name=name, gcs=gcp.cloudrunv2.JobTemplateTemplateVolumeGcsArgs(
        bucket=bucket, read_only=read_only, mount_options=[f"only-dir={directory}"] if directory else None))


def container_args(settings: RetrainingSettings, model: str, version: str) -> list[str]:
    data_file = settings.data_key.rsplit("/", 1)[-1]
    _, store = bucket_and_prefix(settings.packages)
    _, champion = settings.champion(model, version)
    _, candidates = settings.candidates()
    return trainer_args(f"{DATA}/{data_file}", f"{PACKAGES}/{champion.removeprefix(store)}".rstrip("/"),
                        f"{PACKAGES}/{candidates.removeprefix(store)}".rstrip("/"))


def workflow_source(project: str, region: str, job: str) -> str:
    """Runs the job for an opening incident of the Pub/Sub alert notification; ignores the rest."""
    return f"""main:
  params: [event]
  steps:
    - decode:
        assign:
          - notification: ${{json.decode(base64.decode(event.data.message.data))}}
    - only_open_incidents:
        switch:
          - condition: ${{notification.incident.state != "open"}}
            return: "ignored: incident not open"
    - run_job:
        call: googleapis.run.v2.projects.locations.jobs.run
        args:
          name: projects/{project}/locations/{region}/jobs/{job}
        result: execution
    - done:
        return: ${{execution.metadata.name}}
"""


class CloudRunRetraining(pulumi.ComponentResource):
    job_name: pulumi.Output[str]
    service_account: pulumi.Output[str]
    drift_channel: pulumi.Output[str] | None

    def __init__(self, name: str, args: CloudRunRetrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:CloudRunRetraining", name, None, opts)
        if len(args.job_name) > 40:
            raise ValueError(f"retraining job name {args.job_name!r}: 40 characters at most")
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        identity = RuntimeIdentity(f"{name}-identity", RuntimeIdentityArgs(
            project=args.project, account_id=f"{args.job_name[:24]}-trn", repository_project=args.repository_project,
            repository_location=args.repository_location, repository_name=args.repository_name,
            project_number=args.project_number), child)
        data_bucket, data_dir = bucket_and_prefix(s.data)
        data_dir = data_dir.rstrip("/").rpartition("/")[0]
        store_bucket, store = bucket_and_prefix(s.packages)
        grants = [
            gcp.storage.BucketIAMMember(f"{name}-read-data", gcp.storage.BucketIAMMemberArgs(
                bucket=data_bucket, role="roles/storage.objectViewer", member=identity.member), opts=child),
            gcp.storage.BucketIAMMember(f"{name}-write-packages", gcp.storage.BucketIAMMemberArgs(
                bucket=store_bucket, role="roles/storage.objectUser", member=identity.member), opts=child),
        ]
        job = gcp.cloudrunv2.Job(f"{name}-job", gcp.cloudrunv2.JobArgs(
            project=args.project, location=args.region, name=args.job_name, deletion_protection=False,
            template=gcp.cloudrunv2.JobTemplateArgs(task_count=1, parallelism=1,
                template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                    service_account=identity.email, timeout=f"{s.timeout_minutes * 60}s", max_retries=1,
                    volumes=[_volume("data", data_bucket, data_dir, True),
                             _volume("packages", store_bucket, store.rstrip("/"), False)],
                    containers=[gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                        image=args.image, commands=["kaizen"], args=container_args(s, args.model, args.version),
                        resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                            limits={"cpu": args.cpu, "memory": args.memory}),
                        volume_mounts=[
                            gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(name="data", mount_path=DATA),
                            gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(
                                name="packages", mount_path=PACKAGES),
                        ])]))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
        invoker = gcp.serviceaccount.Account(f"{name}-invoker", gcp.serviceaccount.AccountArgs(
            project=args.project, account_id=f"{args.job_name[:22]}-run", display_name="Kaizen retraining invoker"),
            opts=child)
        invoker_member = invoker.email.apply(lambda e: f"serviceAccount:{e}")
        run_grant = gcp.cloudrunv2.JobIamMember(f"{name}-invoker-run", gcp.cloudrunv2.JobIamMemberArgs(
            project=args.project, location=args.region, name=job.name, role="roles/run.invoker",
            member=invoker_member), opts=child)
        if s.schedule is not None:
            gcp.cloudscheduler.Job(f"{name}-schedule", gcp.cloudscheduler.JobArgs(
                project=args.project, region=args.region, schedule=s.schedule, time_zone="Etc/UTC",
                attempt_deadline="30s", http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    http_method="POST",
                    uri=job.name.apply(lambda n: f"https://run.googleapis.com/v2/projects/{args.project}/locations/"
                                                 f"{args.region}/jobs/{n}:run"),
                    oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                        service_account_email=invoker.email, scope="https://www.googleapis.com/auth/cloud-platform"))),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[run_grant]))
        self.drift_channel = None
        if s.on_drift:
            self.drift_channel = self._drift(name, args, job, invoker, run_grant)
        self.job_name = job.name
        self.service_account = identity.email
        self.register_outputs({"job_name": self.job_name, "service_account": self.service_account})

    def _drift(self, name: str, args: CloudRunRetrainingArgs, job: gcp.cloudrunv2.Job,
               invoker: gcp.serviceaccount.Account, run_grant: pulumi.Resource) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        topic = gcp.pubsub.Topic(f"{name}-drift", gcp.pubsub.TopicArgs(
            project=args.project, name=f"{args.job_name}-drift", message_retention_duration="86400s"), opts=child)
        agent = pulumi.Output.from_input(args.project_number).apply(
            lambda n: f"serviceAccount:service-{n}@gcp-sa-monitoring-notification.iam.gserviceaccount.com")
        publish = gcp.pubsub.TopicIAMMember(f"{name}-drift-publisher", gcp.pubsub.TopicIAMMemberArgs(
            project=args.project, topic=topic.name, role="roles/pubsub.publisher", member=agent), opts=child)
        channel = gcp.monitoring.NotificationChannel(f"{name}-drift", gcp.monitoring.NotificationChannelArgs(
            project=args.project, type="pubsub", display_name=f"Kaizen retrain {args.model} on drift",
            labels={"topic": topic.id}), opts=pulumi.ResourceOptions(parent=self, depends_on=[publish]))
        workflow = gcp.workflows.Workflow(f"{name}-drift", gcp.workflows.WorkflowArgs(
            project=args.project, region=args.region, name=f"{args.job_name}-drift", service_account=invoker.email,
            deletion_protection=False, call_log_level="LOG_ERRORS_ONLY",
            description=f"run {args.job_name} when the drift alert of {args.model} opens",
            source_contents=job.name.apply(lambda n: workflow_source(args.project, args.region, n))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[run_grant]))
        trigger_sa = gcp.serviceaccount.Account(f"{name}-eventarc", gcp.serviceaccount.AccountArgs(
            project=args.project, account_id=f"{args.job_name[:22]}-evt",
            display_name="Kaizen retraining drift trigger"), opts=child)
        start = gcp.projects.IAMMember(f"{name}-eventarc-invoke", gcp.projects.IAMMemberArgs(
            project=args.project, role="roles/workflows.invoker",
            member=trigger_sa.email.apply(lambda e: f"serviceAccount:{e}"),
            condition=gcp.projects.IAMMemberConditionArgs(
                title="this workflow only", expression=workflow.name.apply(
                    lambda w: f'resource.name == "projects/{args.project}/locations/{args.region}/workflows/{w}"'))),
            opts=child)
        gcp.eventarc.Trigger(f"{name}-drift", gcp.eventarc.TriggerArgs(
            project=args.project, location=args.region, name=f"{args.job_name}-drift",
            matching_criterias=[gcp.eventarc.TriggerMatchingCriteriaArgs(attribute="type", value=PUBLISHED)],
            transport=gcp.eventarc.TriggerTransportArgs(pubsub=gcp.eventarc.TriggerTransportPubsubArgs(
                topic=topic.id)),
            destination=gcp.eventarc.TriggerDestinationArgs(workflow=workflow.id),
            service_account=trigger_sa.email), opts=pulumi.ResourceOptions(parent=self, depends_on=[start]))
        return channel.name
