"""Post-deploy smoke test of a SageMaker endpoint, and reading what data capture stored.

    python -m model_packages.ci.sagemaker_smoke --endpoint kaizen-iris-aws-dev --region eu-west-1 \
        --payload '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' [--capture-uri s3://bucket/datacapture]

Steps: wait until the endpoint is InService, invoke it (sagemaker-runtime InvokeEndpoint, JSON),
check the answer has `predictions`, then (optionally) poll the capture prefix until a record for
this endpoint shows up. Exit code 0 on success, 1 with a message otherwise. `AWS_ENDPOINT_URL`
(standard boto3 setting) points every client at another endpoint, e.g. a moto server in tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

VARIANT = "AllTraffic"


class SmokeError(RuntimeError):
    pass


@dataclass
class SmokeResult:
    endpoint: str
    status: str
    predictions: list[Any]
    latency_ms: float
    invoked_variant: str | None = None
    captured: list[dict[str, Any]] = field(default_factory=list)


def wait_in_service(sagemaker: Any, endpoint: str, timeout_s: float = 1800, poll_s: float = 15) -> str:
    """Block until the endpoint is InService; raise on Failed/OutOfService or time-out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            desc = sagemaker.describe_endpoint(EndpointName=endpoint)
        except ClientError as err:
            raise SmokeError(f"endpoint {endpoint}: {err.response.get('Error', {}).get('Message', err)}") from err
        status = desc["EndpointStatus"]
        if status == "InService":
            return status
        # RollingBack/UpdateRollbackFailed: the new configuration failed its guardrails; waiting
        # would end InService on the *old* configuration (or never).
        if status in ("Failed", "OutOfService", "Deleting", "RollingBack", "UpdateRollbackFailed"):
            raise SmokeError(f"endpoint {endpoint} is {status}: {desc.get('FailureReason', 'no reason given')}")
        if time.monotonic() > deadline:
            raise SmokeError(f"endpoint {endpoint} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def invoke(runtime: Any, endpoint: str, payload: dict[str, Any]) -> tuple[list[Any], float, str | None]:
    started = time.perf_counter()
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(payload).encode(),
        )
    except ClientError as err:
        raise SmokeError(f"invoking {endpoint}: {err.response.get('Error', {}).get('Message', err)}") from err
    latency_ms = (time.perf_counter() - started) * 1000
    raw = response["Body"].read()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SmokeError(f"endpoint {endpoint} answered non-JSON: {raw[:200]!r}") from err
    if not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
        raise SmokeError(f"endpoint {endpoint} answered without a predictions list: {body!r}"[:300])
    if len(body["predictions"]) != len(payload.get("instances", [])):
        raise SmokeError(
            f"endpoint {endpoint} returned {len(body['predictions'])} predictions for "
            f"{len(payload.get('instances', []))} instances"
        )
    return body["predictions"], latency_ms, response.get("InvokedProductionVariant")


def _decode(part: dict[str, Any]) -> Any:
    data = part.get("data", "")
    if part.get("encoding") == "BASE64":
        data = base64.b64decode(data).decode()
    if part.get("encoding") in ("JSON", "BASE64") and part.get("observedContentType", "").startswith(
        "application/json"
    ):
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            return data
    return data


def read_captured(s3: Any, capture_uri: str, endpoint: str, variant: str = VARIANT) -> list[dict[str, Any]]:
    """Every data-capture record of `endpoint` under `capture_uri` (s3://bucket/prefix), oldest first.

    SageMaker writes JSON Lines to <prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl; each line
    holds captureData.endpointInput/endpointOutput (data + encoding) and eventMetadata.
    """
    parsed = urlparse(capture_uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SmokeError(f"not an s3:// URI: {capture_uri!r}")
    prefix = "/".join(p for p in (parsed.path.strip("/"), endpoint, variant) if p) + "/"
    records: list[dict[str, Any]] = []
    paginator = s3.get_paginator("list_objects_v2")
    keys = [
        obj["Key"]
        for page in paginator.paginate(Bucket=parsed.netloc, Prefix=prefix)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(".jsonl")
    ]
    for key in sorted(keys):
        body = s3.get_object(Bucket=parsed.netloc, Key=key)["Body"].read().decode()
        for line in body.splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            capture = event.get("captureData", {})
            records.append(
                {
                    "key": key,
                    "event_id": event.get("eventMetadata", {}).get("eventId"),
                    "time": event.get("eventMetadata", {}).get("inferenceTime"),
                    "input": _decode(capture.get("endpointInput", {})),
                    "output": _decode(capture.get("endpointOutput", {})),
                }
            )
    return records


def smoke(
    endpoint: str,
    payload: dict[str, Any],
    *,
    region: str,
    capture_uri: str | None = None,
    capture_timeout_s: float = 0,
    service_timeout_s: float = 1800,
    poll_s: float = 15,
    session: boto3.Session | None = None,
) -> SmokeResult:
    session = session or boto3.Session(region_name=region)
    sagemaker = session.client("sagemaker", region_name=region)
    runtime = session.client("sagemaker-runtime", region_name=region)
    status = wait_in_service(sagemaker, endpoint, service_timeout_s, poll_s)
    predictions, latency_ms, variant = invoke(runtime, endpoint, payload)
    result = SmokeResult(endpoint, status, predictions, latency_ms, variant)
    if capture_uri:
        s3 = session.client("s3", region_name=region)
        deadline = time.monotonic() + capture_timeout_s
        while True:
            result.captured = read_captured(s3, capture_uri, endpoint)
            if result.captured or time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        if not result.captured:
            raise SmokeError(f"no captured data for {endpoint} under {capture_uri} after {capture_timeout_s:.0f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--payload", required=True, help='JSON, e.g. {"instances": [[1, 2, 3, 4]]}')
    parser.add_argument("--capture-uri", help="s3://bucket/prefix of the endpoint's data capture")
    parser.add_argument("--capture-timeout", type=float, default=600.0)
    parser.add_argument("--service-timeout", type=float, default=1800.0)
    parser.add_argument("--poll", type=float, default=15.0)
    args = parser.parse_args(argv)
    try:
        result = smoke(
            args.endpoint,
            json.loads(args.payload),
            region=args.region,
            capture_uri=args.capture_uri,
            capture_timeout_s=args.capture_timeout,
            service_timeout_s=args.service_timeout,
            poll_s=args.poll,
        )
    except (SmokeError, json.JSONDecodeError) as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "endpoint": result.endpoint,
                "status": result.status,
                "latency_ms": round(result.latency_ms, 1),
                "predictions": result.predictions,
                "captured_records": len(result.captured),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
