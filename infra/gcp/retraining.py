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

from ..batch_config import bucket_and_prefix
from ..retraining_config import RetrainingSettings, trainer_args
from .jobs import (
    BucketMount,
    CloudRunJobArgs,
    JobInvoker,
    RegistryAccess,
    cloud_run_job,
    job_invoker,
    job_schedule,
)

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
    registry: RegistryAccess
    cpu: str = "2"
    memory: str = "4Gi"


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
        s = args.settings
        data_bucket, data_dir = bucket_and_prefix(s.data)
        store_bucket, store = bucket_and_prefix(s.packages)
        spec = CloudRunJobArgs(
            project=args.project, region=args.region, job_name=args.job_name, account_id=f"{args.job_name[:24]}-trn",
            registry=args.registry, image=args.image, commands=["kaizen"],
            args=container_args(s, args.model, args.version),
            mounts=(BucketMount("data", "read-data", data_bucket, data_dir.rstrip("/").rpartition("/")[0], DATA, True),
                    BucketMount("packages", "write-packages", store_bucket, store.rstrip("/"), PACKAGES, False)),
            timeout_minutes=s.timeout_minutes, max_retries=1, cpu=args.cpu, memory=args.memory)
        made = cloud_run_job(name, spec, self)
        job = made.job
        # the scheduler and the drift Workflow both run the job as this account
        invoker = job_invoker(name, spec, job, f"{args.job_name[:22]}-run", "Kaizen retraining invoker", self)
        if s.schedule is not None:
            job_schedule(name, spec, job, invoker, s.schedule, "Etc/UTC", self)
        self.drift_channel = None
        if s.on_drift:
            self.drift_channel = self._drift(name, args, job, invoker)
        self.job_name = job.name
        self.service_account = made.identity.email
        self.register_outputs({"job_name": self.job_name, "service_account": self.service_account})

    def _drift(self, name: str, args: CloudRunRetrainingArgs, job: gcp.cloudrunv2.Job,
               invoker: JobInvoker) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        topic = gcp.pubsub.Topic(f"{name}-drift", gcp.pubsub.TopicArgs(
            project=args.project, name=f"{args.job_name}-drift", message_retention_duration="86400s"), opts=child)
        agent = pulumi.Output.from_input(args.registry.project_number).apply(
            lambda n: f"serviceAccount:service-{n}@gcp-sa-monitoring-notification.iam.gserviceaccount.com")
        publish = gcp.pubsub.TopicIAMMember(f"{name}-drift-publisher", gcp.pubsub.TopicIAMMemberArgs(
            project=args.project, topic=topic.name, role="roles/pubsub.publisher", member=agent), opts=child)
        channel = gcp.monitoring.NotificationChannel(f"{name}-drift", gcp.monitoring.NotificationChannelArgs(
            project=args.project, type="pubsub", display_name=f"Kaizen retrain {args.model} on drift",
            labels={"topic": topic.id}), opts=pulumi.ResourceOptions(parent=self, depends_on=[publish]))
        workflow = gcp.workflows.Workflow(f"{name}-drift", gcp.workflows.WorkflowArgs(
            project=args.project, region=args.region, name=f"{args.job_name}-drift",
            service_account=invoker.account.email, deletion_protection=False, call_log_level="LOG_ERRORS_ONLY",
            description=f"run {args.job_name} when the drift alert of {args.model} opens",
            source_contents=job.name.apply(lambda n: workflow_source(args.project, args.region, n))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[invoker.grant]))
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
