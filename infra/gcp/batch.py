"""Batch scoring on GCP: the model image as a Cloud Run Job over Cloud Storage, on a schedule.

- the job runs `IMAGE batch /data/in/<file>... --out /data/out/{execution}` with the input prefix
  mounted read-only and the output prefix read-write (Cloud Storage volumes, `only-dir`), so each
  execution writes its own directory and a retried task resumes it (`maxRetries`);
- its own service account reads the input bucket (`roles/storage.objectViewer`) and writes the
  output bucket (`roles/storage.objectUser`: the manifest is rewritten, so delete too), nothing else;
  the image is pulled by the Cloud Run service agent (Artifact Registry Reader, as for the service);
- with a schedule, Cloud Scheduler runs it as an invoker account allowed to run this one job
  (infra/gcp/jobs.py); without one, executions are triggered (`gcloud run jobs execute`, Workflows,
  Eventarc).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from ..batch_config import BatchSettings, bucket_and_prefix
from .jobs import BucketMount, CloudRunJobArgs, RegistryAccess, cloud_run_job, job_invoker, job_schedule

IN, OUT = "/data/in", "/data/out"


@dataclass(frozen=True)
class CloudRunBatchJobArgs:
    project: str
    region: str
    job_name: str
    image: pulumi.Input[str]
    settings: BatchSettings
    registry: RegistryAccess
    cpu: str = "2"
    memory: str = "2Gi"
    time_zone: str = "Etc/UTC"


def _mount(name: str, grant: str, location: str, path: str, read_only: bool) -> BucketMount:
    bucket, prefix = bucket_and_prefix(location)
    return BucketMount(name, grant, bucket, prefix.rstrip("/"), path, read_only)


def job_args(settings: BatchSettings) -> list[str]:
    args = ["batch", *(f"{IN}/{n}" for n in settings.inputs), "--out", f"{OUT}/{{execution}}",
            "--chunk-rows", str(settings.chunk_rows)]
    return [*args, "--probabilities"] if settings.probabilities else args


class CloudRunBatchJob(pulumi.ComponentResource):
    job_name: pulumi.Output[str]
    service_account: pulumi.Output[str]

    def __init__(self, name: str, args: CloudRunBatchJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:gcp:CloudRunBatchJob", name, None, opts)
        s = args.settings
        spec = CloudRunJobArgs(
            project=args.project, region=args.region, job_name=args.job_name, account_id=f"{args.job_name[:24]}-job",
            registry=args.registry, image=args.image, args=job_args(s),
            mounts=(_mount("input", "read-input", s.input, IN, True),
                    _mount("output", "write-output", s.output, OUT, False)),
            timeout_minutes=s.timeout_minutes, max_retries=3, cpu=args.cpu, memory=args.memory)
        made = cloud_run_job(name, spec, self)
        if s.schedule is not None:
            invoker = job_invoker(name, spec, made.job, f"{args.job_name[:22]}-sched", "Kaizen batch scheduler", self)
            job_schedule(name, spec, made.job, invoker, s.schedule, args.time_zone, self)
        self.job_name = made.job.name
        self.service_account = made.identity.email
        self.register_outputs({"job_name": self.job_name, "service_account": self.service_account})
