"""`kaizen ci smoke-stack` on an Azure ML stack's outputs: the scoring URI with an Entra ID token
(managed online endpoints expose nothing else), against a local HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from model_packages.ci import smoke
from tests.support import ROOT

IRIS = ROOT / "examples" / "iris-classifier"


class _Endpoint(ThreadingHTTPServer):
    """An authenticated scoring route: 503 while "provisioning", then one prediction per row."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.unready = 2
        self.seen: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        server = cast(_Endpoint, self.server)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != "Bearer entra-token":
            return self._send(401, {"error": "invalid token"})
        if server.unready:
            server.unready -= 1
            return self._send(503, {"error": "deployment not ready"})
        self._send(200, {"predictions": [0 for _ in body["instances"]]})

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def endpoint() -> Iterator[_Endpoint]:
    server = _Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _outputs(server: _Endpoint) -> dict[str, Any]:
    host, port = server.server_address[:2]
    return {"endpointId": "/subscriptions/0/…/onlineEndpoints/kz-iris-azure-prod",
            "scoringUri": f"http://{host!s}:{port}/score", "deployments": ["d000000000000"]}


def test_azure_ml_stack_is_scored_with_the_token(endpoint: _Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_SMOKE_TOKEN", "entra-token")
    result = smoke.smoke_outputs(_outputs(endpoint), IRIS, timeout=60)
    assert result["model"] == "iris-classifier" and result["predictions"] == [0]
    assert [s["path"] for s in endpoint.seen] == ["/score"] * 3  # two 503s while provisioning, then the answer
    assert {s["auth"] for s in endpoint.seen} == {"Bearer entra-token"}
    assert len(endpoint.seen[-1]["body"]["instances"]) == 1


def test_a_refused_token_fails_at_once(endpoint: _Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_SMOKE_TOKEN", "expired")
    with pytest.raises(smoke.SmokeError, match=r"/score answered 401: .*invalid token"):
        smoke.smoke_outputs(_outputs(endpoint), IRIS, timeout=60)
    assert len(endpoint.seen) == 1


def test_without_a_token_or_an_azure_cli_the_error_says_what_to_set(
    endpoint: _Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KAIZEN_SMOKE_TOKEN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `az`
    with pytest.raises(smoke.SmokeError, match=r"needs an Entra ID token: set \$KAIZEN_SMOKE_TOKEN"):
        smoke.smoke_outputs(_outputs(endpoint), IRIS, timeout=60)
    assert endpoint.seen == []
