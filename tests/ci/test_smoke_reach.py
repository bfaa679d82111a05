"""`kaizen ci smoke-stack` on endpoints a runner may not reach: internal Cloud Run / Container Apps
ingress is refused at once with what to change (not a timeout), and a reachable Cloud Run service is
called with the ID token the workflow put in $KAIZEN_SMOKE_TOKEN (a real HTTP server on loopback)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model_packages.ci.smoke import SmokeError, smoke_outputs, unreachable
from model_packages.cli import app
from tests.support import ROOT

PACKAGE = ROOT / "examples" / "iris-classifier"


@pytest.fixture
def cloud_run() -> Iterator[tuple[str, list[str]]]:
    """An endpoint that, like Cloud Run with IAM invokers, answers 403 without the right bearer token."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            seen.append(self.headers.get("Authorization", ""))
            return self.headers.get("Authorization") == "Bearer id-token-for-the-service"

        def do_GET(self) -> None:
            self._answer(200 if self._authorized() else 403, {"ready": True})

        def do_POST(self) -> None:
            rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"]
            self._answer(200, {"predictions": [0] * len(rows)}) if self._authorized() else self._answer(403, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("outputs", "env", "says"), [
    ({"serviceUri": "https://s.run.app", "ingress": "internal"}, {}, "self-hosted runner in the service's VPC"),
    ({"serviceUri": "https://s.run.app", "ingress": "internal-and-cloud-load-balancing"}, {},
     "kaizen:gcp.ingress: all"),
    ({"fqdn": "app.internal.env.azurecontainerapps.io", "ingress": "environment"}, {"KAIZEN_SMOKE_IN_NETWORK": "true"},
     "no runner can. Set kaizen:azure.infrastructureSubnetId"),
    ({"fqdn": "app.internal.env.azurecontainerapps.io", "ingress": "vnet"}, {}, "self-hosted runner in that VNet"),
])
def test_an_internal_endpoint_is_refused_saying_what_to_change(outputs: dict[str, Any], env: dict[str, str],
                                                                says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert says in (unreachable(outputs) or "")
    with pytest.raises(SmokeError, match=says.replace(".", r"\.")):
        smoke_outputs(outputs, PACKAGE, timeout=3600)  # refused before any request, whatever the timeout


def test_reachable_endpoints_are_not_refused() -> None:
    assert unreachable({"serviceUri": "https://s.run.app", "ingress": "all"}, {}) is None
    inside = {"KAIZEN_SMOKE_IN_NETWORK": "true"}
    assert unreachable({"serviceUri": "https://s.run.app", "ingress": "internal"}, inside) is None
    assert unreachable({"fqdn": "app.env.azurecontainerapps.io", "ingress": "external"}, {}) is None
    assert unreachable({"fqdn": "app.x", "ingress": "vnet"}, {"KAIZEN_SMOKE_IN_NETWORK": "true"}) is None
    assert unreachable({"endpointUrl": "http://127.0.0.1:1"}, {}) is None


def test_cloud_run_is_smoked_with_the_id_token(cloud_run: tuple[str, list[str]], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = cloud_run
    outputs = {"endpointUrl": url, "serviceUri": url, "ingress": "all", "serviceName": "kaizen-iris"}
    monkeypatch.delenv("KAIZEN_SMOKE_TOKEN", raising=False)
    with pytest.raises(SmokeError, match="did not answer 200"):
        smoke_outputs(outputs, PACKAGE, timeout=2)
    monkeypatch.setenv("KAIZEN_SMOKE_TOKEN", "id-token-for-the-service")
    answer = smoke_outputs(outputs, PACKAGE, timeout=30)
    assert answer["model"] == "iris-classifier" and answer["predictions"] == [0]
    assert seen[-1] == "Bearer id-token-for-the-service"
    # The workflow asks google-github-actions/auth for an ID token with this audience.
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    printed = CliRunner().invoke(app, ["ci", "audience", "--outputs", str(tmp_path / "outputs.json")])
    assert printed.exit_code == 0 and printed.stdout.strip() == url
    (tmp_path / "outputs.json").write_text(json.dumps({"endpointName": "kz-iris"}))
    printed = CliRunner().invoke(app, ["ci", "audience", "--outputs", str(tmp_path / "outputs.json")])
    assert printed.exit_code == 0 and printed.stdout.strip() == ""


def test_a_sagemaker_stack_is_scored_through_its_api_not_its_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stack exports endpointUrl; a SageMaker invocations URL needs SigV4, so endpointName wins."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    outputs = {"endpointUrl": "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/kz/invocations",
               "endpointName": "kz"}
    with pytest.raises(SmokeError, match="AWS_REGION is not set"):
        smoke_outputs(outputs, PACKAGE, timeout=2)
