"""ECR authentication through boto3's get_authorization_token, against a moto server."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from model_packages.image import auth
from tests.support import moto_threaded

ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_threaded() as url:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": url,
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield url


def test_ecr_credentials_from_get_authorization_token(moto_endpoint: str) -> None:
    creds = auth.credentials_for(HOST, env={})
    assert creds is not None
    assert creds.username == "AWS" and creds.password
    assert creds.source == "ecr:GetAuthorizationToken"
    # The same token, decoded by hand from the API answer.
    import boto3

    data = boto3.client("ecr", region_name="eu-west-1").get_authorization_token()
    token = base64.b64decode(data["authorizationData"][0]["authorizationToken"]).decode()
    assert token.startswith("AWS:")


def test_ecr_without_credentials_names_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(auth.RegistryAuthError, match=HOST.replace(".", r"\.")):
        auth.ecr_credentials(HOST)
