"""Registry authentication (model_packages/image/auth.py): the registry kinds, the ACR token exchange
against a loopback stub, explicit and cloud credentials from the environment."""

from __future__ import annotations

import http.server
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from model_packages.image import auth

from .conftest import stub_http_server


def test_registry_kinds() -> None:
    assert auth.registry_kind("123456789012.dkr.ecr.us-east-1.amazonaws.com") == "ecr"
    assert auth.registry_kind("kaizenprod.azurecr.io") == "acr"
    assert auth.registry_kind("europe-west4-docker.pkg.dev") == "gar"
    assert auth.registry_kind("gcr.io") == "gar"
    assert auth.registry_kind("127.0.0.1:5000") == "generic"
    assert auth.credentials_for("127.0.0.1:5000", env={}) is None


class _ExchangeHandler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        self.seen.append(form)
        ok = self.path == "/oauth2/exchange" and form.get("access_token") == ["entra-token"]
        body = json.dumps({"refresh_token": "acr-refresh"} if ok else {"error": "bad"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def exchange_server() -> Iterator[str]:
    with stub_http_server(_ExchangeHandler) as port:
        yield f"http://127.0.0.1:{port}"


def test_acr_token_exchange(exchange_server: str) -> None:
    creds = auth.acr_credentials(
        "kaizenprod.azurecr.io", env={"AZURE_ACCESS_TOKEN": "entra-token"}, base_url=exchange_server
    )
    assert creds.username == auth.ACR_NULL_USER and creds.password == "acr-refresh"
    assert _ExchangeHandler.seen[-1]["service"] == ["kaizenprod.azurecr.io"]
    assert _ExchangeHandler.seen[-1]["grant_type"] == ["access_token"]
    assert "acr-refresh" not in repr(creds)
    with pytest.raises(auth.RegistryAuthError, match=r"kaizenprod\.azurecr\.io.*refused"):
        auth.acr_credentials(
            "kaizenprod.azurecr.io", env={"AZURE_ACCESS_TOKEN": "wrong"}, base_url=exchange_server
        )


def test_artifact_registry_token_from_env() -> None:
    creds = auth.credentials_for(
        "europe-west4-docker.pkg.dev", env={"GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.token"}
    )
    assert creds is not None
    assert (creds.username, creds.password) == ("oauth2accesstoken", "ya29.token")


def test_explicit_credentials_win() -> None:
    creds = auth.credentials_for(
        "registry.example:5000",
        env={"KAIZEN_REGISTRY_USERNAME": "u", "KAIZEN_REGISTRY_PASSWORD": "p"},
    )
    assert creds is not None and creds.docker_auth_config() == {"username": "u", "password": "p"}
