"""Smoke test of a deployed HTTP endpoint: ready, then one prediction of a typical row."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from model_packages import stack_outputs as out
from model_packages.baseline import typical_row
from model_packages.errors import KaizenError
from model_packages.manifest import read_manifest


class SmokeError(KaizenError):
    """The endpoint is not ready or does not predict."""


def _request(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def smoke(url: str, package: Path, *, timeout: float = 120.0, headers: dict[str, str] | None = None,
          predict_url: str | None = None) -> dict[str, Any]:
    """Wait for readiness, then predict one typical row; the answer, or SmokeError naming what failed."""
    manifest = read_manifest(package)
    base = url.rstrip("/")
    deadline = time.monotonic() + timeout
    status, detail = 0, b""
    while time.monotonic() < deadline:
        try:
            status, detail = _request(f"{base}/health/ready", headers=headers)
        except OSError as err:
            status, detail = 0, str(err).encode()
        if status == 200:
            break
        time.sleep(1)
    else:
        raise SmokeError(f"{base}/health/ready did not answer 200 in {timeout:.0f}s (last: {status} {detail[:200]!r})")
    target = predict_url or f"{base}/predict"
    status, answer = _request(target, {"instances": [typical_row(manifest)]}, headers)
    return _prediction(target, status, answer, manifest)


def _prediction(target: str, status: int, answer: bytes, manifest: Any) -> dict[str, Any]:
    if status != 200:
        raise SmokeError(f"{target} answered {status}: {answer[:500].decode(errors='replace')}")
    try:
        result = json.loads(answer)
    except ValueError:
        result = None
    if not isinstance(result, dict) or len(result.get("predictions", [])) != 1:
        raise SmokeError(f"{target} answered without one prediction: {answer[:500]!r}")
    return {"model": manifest.name, "version": manifest.version, "predictions": result["predictions"]}


AZURE_ML_RESOURCE = "https://ml.azure.com"  # token audience of managed online endpoints (authMode AADToken)


def azure_ml_token() -> str:
    """An Entra ID token for Azure ML endpoints: `$KAIZEN_SMOKE_TOKEN`, else the Azure CLI's (the
    workflows' `azure/login` step logs it in)."""
    token = os.environ.get("KAIZEN_SMOKE_TOKEN")
    if token:
        return token
    az = shutil.which("az")
    if az is None:
        raise SmokeError("the Azure ML endpoint needs an Entra ID token: set $KAIZEN_SMOKE_TOKEN or log the Azure "
                         f"CLI in (az account get-access-token --resource {AZURE_ML_RESOURCE})")
    proc = subprocess.run([az, "account", "get-access-token", "--resource", AZURE_ML_RESOURCE, "--query",
                           "accessToken", "-o", "tsv"], capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode or not proc.stdout.strip():
        raise SmokeError(f"az account get-access-token failed: {proc.stderr.strip()[-300:] or 'no token'}")
    return proc.stdout.strip()


def smoke_scoring(scoring_uri: str, package: Path, token: str, *, timeout: float = 300.0) -> dict[str, Any]:
    """An Azure ML managed endpoint exposes only its scoring URI (the deployment's probes stay inside
    Azure): post one typical row until it answers, retrying connection errors and 5xx until `timeout`."""
    manifest = read_manifest(package)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, answer = _request(scoring_uri, {"instances": [typical_row(manifest)]}, headers)
        except OSError as err:
            status, answer = 0, str(err).encode()
        if (status != 0 and status < 500) or time.monotonic() >= deadline:
            return _prediction(scoring_uri, status, answer, manifest)
        time.sleep(2)


IN_NETWORK = "KAIZEN_SMOKE_IN_NETWORK"


def unreachable(outputs: dict[str, Any], env: dict[str, str] | None = None) -> str | None:
    """Why this runner cannot reach the stack's endpoint (its `ingress` output), or None. A runner in
    the endpoint's network says so with `$KAIZEN_SMOKE_IN_NETWORK=true` (a self-hosted runner)."""
    env = dict(os.environ) if env is None else env
    ingress = str(outputs.get(out.INGRESS, ""))
    in_network = env.get(IN_NETWORK, "").lower() == "true"
    if out.CLOUD_RUN_URI in outputs and ingress in ("internal", "internal-and-cloud-load-balancing") and not in_network:
        return (f"the Cloud Run service {outputs[out.CLOUD_RUN_URI]} has ingress {ingress!r}: a GitHub-hosted runner "
                "cannot reach it. Smoke-test from a self-hosted runner in the service's VPC network with "
                f"{IN_NETWORK}=true, or set kaizen:gcp.ingress: all with kaizen:gcp.public: true "
                "(IAM invokers still apply; the workflows send an ID token for the service)")
    fqdn = outputs.get(out.CONTAINER_APP_FQDN)
    if fqdn is not None and ingress == "environment":
        return (f"the Container App {fqdn} has internal ingress without a VNet: only apps in its own "
                "Container Apps environment can reach it, no runner can. Set kaizen:azure.infrastructureSubnetId "
                f"(internal ingress in your VNet; smoke-test from a self-hosted runner there with {IN_NETWORK}=true) "
                "or kaizen:azure.public: true (external ingress; there is no kaizen:azure.externalIngress)")
    if fqdn is not None and ingress == "vnet" and not in_network:
        return (f"the Container App {fqdn} has internal ingress in a VNet: a GitHub-hosted runner cannot "
                f"reach it. Smoke-test from a self-hosted runner in that VNet with {IN_NETWORK}=true, or set "
                "kaizen:azure.public: true (external ingress)")
    return None


def audience(outputs: dict[str, Any]) -> str:
    """The audience of the ID token a Cloud Run smoke test sends (the service URL); "" otherwise."""
    return str(outputs.get(out.CLOUD_RUN_URI, ""))


def smoke_outputs(outputs: dict[str, Any], package: Path, *, timeout: float = 300.0) -> dict[str, Any]:
    """Smoke-test the endpoint a stack's outputs name: the local target and Cloud Run/Container Apps
    over HTTP (`$KAIZEN_SMOKE_TOKEN` as a bearer token where the endpoint needs one), Azure ML by its
    scoring URI with an Entra ID token, SageMaker through its runtime API (region from `$AWS_REGION`).
    An endpoint this runner cannot reach is refused at once, saying why and what to change, instead of
    waiting out the timeout."""
    reason = unreachable(outputs)
    if reason is not None:
        raise SmokeError(reason)
    token = os.environ.get("KAIZEN_SMOKE_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if out.AZURE_ML_SCORING_URI in outputs:  # Azure ML managed online endpoint, always authenticated
        return smoke_scoring(str(outputs[out.AZURE_ML_SCORING_URI]), package, azure_ml_token(), timeout=timeout)
    if out.SAGEMAKER_ENDPOINT in outputs:
        from model_packages.ci.sagemaker_smoke import SmokeError as AwsSmokeError
        from model_packages.ci.sagemaker_smoke import smoke as smoke_sagemaker

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise SmokeError("AWS_REGION is not set: the SageMaker smoke test needs the endpoint's region")
        manifest = read_manifest(package)
        try:
            result = smoke_sagemaker(str(outputs[out.SAGEMAKER_ENDPOINT]), {"instances": [typical_row(manifest)]},
                                     region=region, service_timeout_s=timeout)
        except AwsSmokeError as err:
            raise SmokeError(str(err)) from None
        return {"model": manifest.name, "version": manifest.version, "predictions": result.predictions}
    if out.ENDPOINT_URL in outputs:  # the runtime's own routes: local, Cloud Run, Container Apps
        return smoke(str(outputs[out.ENDPOINT_URL]), package, timeout=timeout, headers=headers)
    raise SmokeError(f"the stack's outputs name no endpoint to smoke-test (outputs: {', '.join(sorted(outputs))})")
