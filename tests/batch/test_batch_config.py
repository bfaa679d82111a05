"""The optional `batch` stack config block: refused with a message naming the key."""

from __future__ import annotations

import pytest

from infra.batch_config import BatchSettings, bucket_and_prefix, location_kind
from infra.common.config import ConfigError, parse_config

BASE = {"target": "local", "owner": "a", "costCenter": "b"}


def _local(batch: dict[str, object]) -> object:
    return parse_config({**BASE, "local": {"batch": batch}}, "local-dev")


@pytest.mark.parametrize(("batch", "message"), [
    ({"input": "/in", "output": "/out", "inputs": ["x.txt"]}, "kaizen:local.batch.inputs"),
    ({"input": "/in", "output": "/out", "inputs": ["../x.csv"]}, "not a plain file name"),
    ({"input": "/in", "output": "/out", "inputs": ["x.csv"], "schedule": "0 3 * * *"}, "schedules are for the cloud"),
    ({"input": "s3://b/in", "output": "s3://b/out", "inputs": ["x.csv"]}, "the target is 'local'"),
    ({"input": "/in", "output": "gs://b/out", "inputs": ["x.csv"]}, "input is local storage but output is gcp"),
    ({"input": "/in", "output": "/out", "inputs": ["x.csv"], "chunkRows": 0}, "kaizen:local.batch.chunkRows"),
    ({"input": "/in", "output": "/out", "inputs": ["x.csv"], "colour": 1}, "kaizen:local.batch.colour"),
])
def test_bad_batch_blocks_are_refused(batch: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _local(batch)


def test_locations() -> None:
    s = BatchSettings.model_validate({"input": "gs://b/in", "output": "gs://b/out/", "inputs": ["d.csv"],
                                      "schedule": "0 3 * * *"})
    assert location_kind(s.input) == "gcp" and bucket_and_prefix(s.output) == ("b", "out/")
    assert bucket_and_prefix("https://acct.blob.core.windows.net/scores/day/") == ("acct/scores", "day/")
    with pytest.raises(ValueError, match="five-field cron"):
        BatchSettings.model_validate({**s.model_dump(), "schedule": "daily"})
