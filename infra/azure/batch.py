"""Batch scoring on Azure: the model image as a Container Apps job in the stack's Container Apps
environment, on a cron schedule (trigger type Schedule) or started on demand (Manual:
`az containerapp job start`).

- the job runs the image's `batch-blob` entry point (model_packages/batch/blob_entry.py): Container
  Apps mounts no Blob Storage, so the inputs are downloaded with the job's managed identity, scored
  by the same `batch` code as everywhere, and the output uploaded under <output><execution>/;
  inputs and outputs must fit the replica's ephemeral storage;
- its own user-assigned identity (infra/azure/jobs.py): AcrPull on the platform registry, Storage
  Blob Data Reader on the input container, Storage Blob Data Contributor on the output container.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from ..batch_config import BatchSettings, bucket_and_prefix
from .jobs import (
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    BlobGrant,
    ContainerAppsJobArgs,
    JobEnvironment,
    container_apps_job,
)


@dataclass(frozen=True)
class ContainerAppsBatchJobArgs:
    where: JobEnvironment  # the stack's Container Apps environment and platform registry
    job_name: str
    image: pulumi.Input[str]  # the stack's model image, by digest
    settings: BatchSettings  # storage_account_id set (checked by AzureSettings)
    cpu: float = 2.0
    memory: str = "4Gi"


def job_args(settings: BatchSettings) -> list[str]:
    args = ["batch-blob", *settings.inputs, "--chunk-rows", str(settings.chunk_rows)]
    return [*args, "--probabilities"] if settings.probabilities else args


def job_env(settings: BatchSettings) -> dict[str, str]:
    (in_container, in_prefix), (out_container, out_prefix) = (bucket_and_prefix(settings.input),
                                                              bucket_and_prefix(settings.output))
    return {"KAIZEN_BLOB_ACCOUNT_URL": f"https://{in_container.split('/', 1)[0]}.blob.core.windows.net",
            "KAIZEN_INPUT_CONTAINER": in_container.split("/", 1)[1], "KAIZEN_INPUT_PREFIX": in_prefix,
            "KAIZEN_OUTPUT_CONTAINER": out_container.split("/", 1)[1], "KAIZEN_OUTPUT_PREFIX": out_prefix}


class ContainerAppsBatchJob(pulumi.ComponentResource):
    job_id: pulumi.Output[str]

    def __init__(self, name: str, args: ContainerAppsBatchJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:ContainerAppsBatchJob", name, None, opts)
        s = args.settings
        if s.storage_account_id is None:
            raise ValueError("kaizen:azure.batch.storageAccountId is required")
        job = container_apps_job(name, ContainerAppsJobArgs(
            where=args.where, job_name=args.job_name, storage_account_id=s.storage_account_id,
            grants=(BlobGrant("read-input", s.input, STORAGE_BLOB_DATA_READER),
                    BlobGrant("write-output", s.output, STORAGE_BLOB_DATA_CONTRIBUTOR)),
            container="batch", image=args.image, args=job_args(s), env=job_env(s), schedule=s.schedule,
            timeout_minutes=s.timeout_minutes, retry_limit=1, cpu=args.cpu, memory=args.memory), self)
        self.job_id = job.job.id
        self.register_outputs({"job_id": self.job_id})
