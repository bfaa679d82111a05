"""The optional batch-scoring block of a stack (`kaizen:<target>.batch`), shared by every target.

    batch:
      input: gs://bucket/in/            # local: an absolute host directory; clouds: s3:// gs:// or
      output: gs://bucket/out/          #   https://<account>.blob.core.windows.net/<container>/
      inputs: [day.csv]                 # file names under `input` (.csv, .jsonl, .parquet)
      schedule: "0 3 * * *"             # cron (UTC); none: run on every `pulumi up` that changes it
      chunkRows: 10000
      probabilities: false
      timeoutMinutes: 60
      storageAccountId: /subscriptions/.../storageAccounts/<account>   # Azure only: the account of input/output
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

_CRON = re.compile(r"^(\S+\s+){4}\S+$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.(csv|jsonl|ndjson|parquet|pq)$")
SCHEMES = {"s3": "aws", "gs": "gcp", "https": "azure", "": "local"}
STORAGE_ACCOUNT_ID = (r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/"
                      r"storageAccounts/[a-z0-9]{3,24}$")


class BatchSettings(BaseModel):
    """A scheduled or triggered batch job: read `inputs` under `input`, write under `output`."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    inputs: list[str] = Field(min_length=1, max_length=100)
    schedule: str | None = None
    chunk_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    probabilities: bool = False
    timeout_minutes: int = Field(default=60, ge=1, le=24 * 60)
    storage_account_id: str | None = Field(default=None, pattern=STORAGE_ACCOUNT_ID)

    @field_validator("inputs")
    @classmethod
    def _file_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _FILE.match(name):
                raise ValueError(f"{name!r} is not a plain file name ending in .csv, .jsonl, .ndjson or .parquet")
        return names

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not _CRON.match(value.strip()):
            raise ValueError(f"{value!r} is not a five-field cron expression (e.g. '0 3 * * *')")
        return value

    @model_validator(mode="after")
    def _same_kind(self) -> BatchSettings:
        kinds = {key: location_kind(getattr(self, key)) for key in ("input", "output")}
        if kinds["input"] != kinds["output"]:
            raise ValueError(f"input is {kinds['input']} storage but output is {kinds['output']}: use one kind")
        if self.input.rstrip("/") == self.output.rstrip("/"):
            raise ValueError("input and output must be different locations")
        return self

    def check_target(self, target: str) -> None:
        kind = location_kind(self.input)
        if kind != target:
            raise ValueError(f"input {self.input!r} is {kind} storage, but the target is {target!r}")
        check_storage_account(target, self.storage_account_id, {"input": self.input, "output": self.output})


def check_storage_account(target: str, account_id: str | None, locations: dict[str, str]) -> None:
    """Azure: the storage account's ARM id is required and must be the account of every location."""
    if target != "azure":
        if account_id is not None:
            raise ValueError("storageAccountId is for Azure stacks only")
        return
    if account_id is None:
        raise ValueError(f"storageAccountId missing: the storage account (ARM id) of {' and '.join(locations)}, "
                         "where the job's identity gets its container-scoped roles")
    account = account_id.rsplit("/", 1)[-1]
    for key, location in locations.items():
        named = bucket_and_prefix(location)[0].split("/", 1)[0]
        if named != account:
            raise ValueError(f"{key} is in storage account {named!r}, but storageAccountId names {account!r}")


def location_kind(location: str) -> str:
    """aws (s3://bucket/prefix), gcp (gs://), azure (https://<account>.blob.core.windows.net/<container>),
    local (an absolute directory)."""
    url = urlparse(location)
    if url.scheme == "" and PurePosixPath(location).is_absolute():
        return "local"
    if url.scheme in ("s3", "gs") and url.netloc:
        return SCHEMES[url.scheme]
    if url.scheme == "https" and url.netloc.endswith(".blob.core.windows.net") and url.path.strip("/"):
        return "azure"
    raise ValueError(f"{location!r}: expected an absolute directory, s3://bucket/prefix, gs://bucket/prefix "
                     "or https://<account>.blob.core.windows.net/<container>/prefix")


def bucket_and_prefix(location: str) -> tuple[str, str]:
    """`s3://b/p/` -> (b, p/); Azure: (account/container, prefix)."""
    url = urlparse(location)
    if url.scheme == "https":
        container, _, prefix = url.path.strip("/").partition("/")
        return f"{url.netloc.split('.')[0]}/{container}", prefix.rstrip("/") + ("/" if prefix else "")
    prefix = url.path.lstrip("/")
    return url.netloc, prefix.rstrip("/") + ("/" if prefix else "")
