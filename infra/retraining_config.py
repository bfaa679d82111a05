"""`kaizen:retraining` of a cloud serving stack: the trainer image as a managed job beside the
endpoint, started on a schedule and when the endpoint's drift alert fires. Off unless set.

    kaizen:retraining:
      image: <registry>/<path>@sha256:<64 hex>   # `kaizen build --trainer PIPELINE`, pushed; by digest
      data: s3://bucket/training/latest.csv        # the training data the job reads (one CSV object)
      packages: s3://bucket/packages/             # the package store: the champion is
                                                  #   <packages><model>/<version>/ (kaizen:model, what
                                                  #   the stack serves), candidates go to <packages>candidates/
      schedule: "0 4 * * 1"                       # cron (UTC), optional
      onDrift: true                               # start when the drift alert fires (default)
      timeoutMinutes: 120
      storageAccountId: /subscriptions/.../storageAccounts/<account>   # Azure only: the account of data/packages

`data` and `packages` are storage of the stack's cloud (s3://, gs://, or
https://<account>.blob.core.windows.net/<container>/...).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from model_packages.image.refs import is_digest_ref

from .batch_config import STORAGE_ACCOUNT_ID, bucket_and_prefix, check_storage_account, location_kind

_CRON = re.compile(r"^(\S+\s+){4}\S+$")
TRAINER_PIPELINE = "/opt/kaizen/pipeline.py"  # where `kaizen build --trainer` puts the pipeline file
CANDIDATES = "candidates/"


class RetrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    image: str
    data: str = Field(min_length=1)
    packages: str = Field(min_length=1)
    schedule: str | None = None
    on_drift: bool = True
    timeout_minutes: int = Field(default=120, ge=1, le=24 * 60)
    storage_account_id: str | None = Field(default=None, pattern=STORAGE_ACCOUNT_ID)

    @field_validator("image")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not is_digest_ref(value):
            raise ValueError(f"{value!r} is not a digest-pinned trainer image REGISTRY/PATH@sha256:<64 hex>")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not _CRON.match(value.strip()):
            raise ValueError(f"{value!r} is not a five-field cron expression (e.g. '0 4 * * 1')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RetrainingSettings:
        if self.schedule is None and not self.on_drift:
            raise ValueError("no trigger: set a schedule, onDrift: true, or both")
        kinds = {key: location_kind(getattr(self, key)) for key in ("data", "packages")}
        if kinds["data"] != kinds["packages"]:
            raise ValueError(f"data is {kinds['data']} storage but packages is {kinds['packages']}: use one kind")
        key = urlparse(self.data).path
        if key.endswith("/") or PurePosixPath(key).suffix != ".csv":
            raise ValueError(f"data {self.data!r} must name one .csv object, not a prefix")
        return self

    @property
    def data_key(self) -> str:
        """The data object's key (bucket_and_prefix adds a trailing slash to prefixes)."""
        return bucket_and_prefix(self.data)[1].rstrip("/")

    def check_target(self, target: str) -> None:
        kind = location_kind(self.data)
        if kind != target:
            raise ValueError(f"data {self.data!r} is {kind} storage, but the target is {target!r}")
        check_storage_account(target, self.storage_account_id, {"data": self.data, "packages": self.packages})

    def champion(self, model: str, version: str) -> tuple[str, str]:
        """(bucket, prefix/) of the deployed package in the store."""
        bucket, prefix = bucket_and_prefix(self.packages)
        return bucket, f"{prefix}{model}/{version}/"

    def candidates(self) -> tuple[str, str]:
        bucket, prefix = bucket_and_prefix(self.packages)
        return bucket, f"{prefix}{CANDIDATES}"


def trainer_args(data: str, champion: str, out: str) -> list[str]:
    """The trainer container's arguments (its entrypoint is `kaizen`): the same command locally."""
    return ["retrain", TRAINER_PIPELINE, "--data", data, "--champion", champion, "--out", out,
            "--cache", "/tmp/kaizen-cache", "--reject-ok"]
