"""model_packages.ci.sagemaker_smoke against a real moto server process on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from model_packages.ci import sagemaker_smoke as smoke
from tests.support import free_port

REGION = "eu-west-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=5).close()
    return moto_server


def _deploy_like_pulumi(endpoint: str, bucket: str) -> None:
    """What the AWS stack declares, through boto3 (moto keeps it in memory)."""
    sm = boto3.client("sagemaker", region_name=REGION)
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaizen/iris@sha256:{'0' * 64}"
    sm.create_model(
        ModelName="endpoint-model-1234",
        PrimaryContainer={"Image": image, "Mode": "SingleModel"},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/execution-role",
        EnableNetworkIsolation=True,
    )
    sm.create_endpoint_config(
        EndpointConfigName="endpoint-config-1234",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "endpoint-model-1234",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 20,
            "DestinationS3Uri": f"s3://{bucket}/datacapture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName="endpoint-config-1234")
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )


def _queue_answer(moto_url: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(
            {
                "account_id": ACCOUNT,
                "region": REGION,
                "results": [
                    {
                        "Body": json.dumps(body),
                        "ContentType": "application/json",
                        "InvokedProductionVariant": "AllTraffic",
                    }
                ],
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()


def _capture_line(event_id: str, instances: list, predictions: list) -> str:
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": json.dumps({"instances": instances}),
                    "encoding": "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": base64.b64encode(json.dumps({"predictions": predictions}).encode()).decode(),
                    "encoding": "BASE64",
                },
            },
            "eventMetadata": {"eventId": event_id, "inferenceTime": "2026-11-26T17:00:00Z"},
            "eventVersion": "0",
        }
    )


def test_smoke_invokes_and_reads_captured_data(aws_env: str, stack_run) -> None:
    outputs = stack_run("aws-dev").outputs  # the names the Pulumi program exports
    endpoint = outputs["endpointName"]
    bucket = outputs["captureBucket"]
    assert outputs["captureUri"] == f"s3://{bucket}/datacapture"
    _deploy_like_pulumi(endpoint, bucket)
    _queue_answer(aws_env, {"predictions": [0, 2]})
    s3 = boto3.client("s3", region_name=REGION)
    key = f"datacapture/{endpoint}/AllTraffic/2026/11/26/17/capture-1.jsonl"
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=(
            _capture_line("e1", [[5.1, 3.5, 1.4, 0.2]], [0])
            + "\n"
            + _capture_line("e2", [[6.7, 3.0, 5.2, 2.3]], [2])
            + "\n"
        ).encode(),
    )
    s3.put_object(Bucket=bucket, Key="datacapture/other-endpoint/AllTraffic/2026/x.jsonl", Body=b"{}\n")

    result = smoke.smoke(
        endpoint,
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        region=REGION,
        capture_uri=outputs["captureUri"],
        poll_s=0.1,
    )
    assert result.status == "InService"
    assert result.predictions == [0, 2]
    assert result.invoked_variant == "AllTraffic"
    assert [r["event_id"] for r in result.captured] == ["e1", "e2"]
    assert result.captured[0]["input"] == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    assert result.captured[1]["output"] == {"predictions": [2]}


def test_smoke_cli_fails_clearly(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = smoke.main(
        ["--endpoint", "missing", "--region", REGION, "--payload", '{"instances": [[1]]}', "--poll", "0.1"]
    )
    assert code == 1
    assert "smoke: FAILED: endpoint missing" in capsys.readouterr().err


def test_smoke_rejects_answers_without_predictions(aws_env: str) -> None:
    _deploy_like_pulumi("kaizen-bad", "kaizen-bad-capture")
    _queue_answer(aws_env, {"error": "model not loaded"})
    with pytest.raises(smoke.SmokeError, match="without a predictions list"):
        smoke.smoke("kaizen-bad", {"instances": [[1.0]]}, region=REGION, poll_s=0.1)


def test_smoke_times_out_without_captured_data(aws_env: str) -> None:
    _deploy_like_pulumi("kaizen-nocap", "kaizen-nocap-capture")
    _queue_answer(aws_env, {"predictions": [1]})
    with pytest.raises(smoke.SmokeError, match="no captured data"):
        smoke.smoke(
            "kaizen-nocap",
            {"instances": [[1.0]]},
            region=REGION,
            capture_uri="s3://kaizen-nocap-capture/datacapture",
            capture_timeout_s=0.3,
            poll_s=0.1,
        )


@pytest.mark.parametrize("status", ["RollingBack", "UpdateRollbackFailed", "Failed"])
def test_wait_stops_at_once_when_the_update_rolls_back(status: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto cannot put an endpoint into a rollback state: botocore's Stubber answers the real client
    # (responses validated against the SageMaker service model) with the status a guardrail
    # rollback reports. Waiting on would end InService on the *old* configuration, or never.
    from botocore.stub import Stubber

    client = boto3.client(
        "sagemaker", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    now = time.time()
    with Stubber(client) as stub:
        stub.add_response(
            "describe_endpoint",
            {
                "EndpointName": "kaizen-iris-aws-dev",
                "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/kaizen-iris-aws-dev",
                "EndpointConfigName": "endpoint-config-1",
                "EndpointStatus": status,
                "FailureReason": "alarm kaizen-iris-aws-dev-errors-5xx went to ALARM",
                "CreationTime": now,
                "LastModifiedTime": now,
            },
            {"EndpointName": "kaizen-iris-aws-dev"},
        )
        def no_poll(_: float) -> None:
            raise AssertionError(f"wait_in_service polled again on {status}")

        monkeypatch.setattr(smoke.time, "sleep", no_poll)
        with pytest.raises(smoke.SmokeError, match=f"is {status}: alarm kaizen-iris-aws-dev-errors-5xx"):
            smoke.wait_in_service(client, "kaizen-iris-aws-dev", timeout_s=600, poll_s=30)
        stub.assert_no_pending_responses()
