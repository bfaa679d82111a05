"""The image's `batch-blob` entry point (an Azure Container Apps batch job): inputs downloaded and
outputs uploaded with the managed identity, against the local Blob/identity HTTP server of
tests/retrain/test_blob.py, scoring the iris example with the real batch job."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from model_packages.azure_blob import BlobError
from model_packages.batch.blob_entry import run_on_blobs
from model_packages.batch.entry import main as score
from tests.retrain.test_blob import HEADER, FakeAzure, azure  # noqa: F401 (the fixture)
from tests.support import ROOT

IRIS = ROOT / "examples" / "iris-classifier"
CSV = b"sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n1,2,abc,1\n"


def _env(server: FakeAzure) -> dict[str, str]:
    return {"IDENTITY_ENDPOINT": f"{server.url}/identity", "IDENTITY_HEADER": HEADER, "AZURE_CLIENT_ID": "c",
            "KAIZEN_BLOB_ACCOUNT_URL": server.url, "KAIZEN_INPUT_CONTAINER": "raw", "KAIZEN_INPUT_PREFIX": "daily/",
            "KAIZEN_OUTPUT_CONTAINER": "scores", "KAIZEN_OUTPUT_PREFIX": "iris/"}


@pytest.fixture(autouse=True)
def model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_MODEL_DIR", str(IRIS))
    monkeypatch.setenv("CONTAINER_APP_JOB_EXECUTION_NAME", "iris-batch-abc12")


def test_scores_blob_inputs_and_uploads_every_row_under_the_execution(azure: FakeAzure,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    azure.blobs = {("raw", "daily/day.csv"): CSV}
    assert run_on_blobs(["day.csv", "--chunk-rows", "2"], _env(azure), tmp_path, score) == 0
    uploaded = {b for c, b in azure.blobs if c == "scores"}
    assert uploaded and all(b.startswith("iris/iris-batch-abc12/") for b in uploaded)
    predictions = [row for (c, b), body in sorted(azure.blobs.items())
                   if c == "scores" and "/predictions/" in b
                   for row in list(csv.reader(io.StringIO(body.decode())))[1:]]
    rejects = [json.loads(line) for (c, b), body in azure.blobs.items()
               if c == "scores" and "/rejects/" in b for line in body.decode().splitlines()]
    assert len(predictions) == 2 and len(rejects) == 1  # every row accounted for
    assert "petal_length" in json.dumps(rejects[0])


def test_a_failed_scoring_uploads_nothing_and_bad_names_are_refused(azure: FakeAzure,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    azure.blobs = {("raw", "daily/day.csv"): CSV}
    assert run_on_blobs(["day.csv"], _env(azure), tmp_path / "a", lambda _argv: 2) == 2
    assert not [b for c, b in azure.blobs if c == "scores"]
    with pytest.raises(BlobError, match="HTTP 404 BlobNotFound"):
        run_on_blobs(["missing.csv"], _env(azure), tmp_path / "b", score)
    with pytest.raises(BlobError, match="not a plain file name"):
        run_on_blobs(["../etc/passwd"], _env(azure), tmp_path / "c", score)
    with pytest.raises(BlobError, match=r"missing settings \['KAIZEN_INPUT_CONTAINER'\]"):
        run_on_blobs(["day.csv"], {**_env(azure), "KAIZEN_INPUT_CONTAINER": ""}, tmp_path / "d", score)


def test_the_image_entry_point_dispatches_batch_blob(capsys: pytest.CaptureFixture[str]) -> None:
    from model_packages.serving.launch import main

    assert main(["batch-blob", "day.csv"]) == 3  # no settings in this environment: a Blob error, logged
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["event"] == "batch_failed"
