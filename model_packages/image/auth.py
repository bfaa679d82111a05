"""Registry credentials: AWS ECR, Azure ACR, Google Artifact Registry, or anonymous.

- **ECR** (``<account>.dkr.ecr.<region>.amazonaws.com``): boto3
  ``ecr.get_authorization_token`` -> base64 ``AWS:<password>``, valid 12 h. The endpoint is
  boto3's (``AWS_ENDPOINT_URL_ECR`` / ``AWS_ENDPOINT_URL`` are honoured, which is how the tests
  point it at a moto server on 127.0.0.1).
- **ACR** (``<name>.azurecr.io``): a Microsoft Entra access token (``AZURE_ACCESS_TOKEN``, else
  azure-identity's DefaultAzureCredential when installed, else ``az account get-access-token``)
  is exchanged at ``https://<registry>/oauth2/exchange`` for an ACR refresh token, used as the
  password of the fixed user ``00000000-0000-0000-0000-000000000000`` (what ``az acr login``
  does).
- **Artifact Registry / GCR** (``<region>-docker.pkg.dev``, ``gcr.io``): an OAuth2 access token
  (``GOOGLE_OAUTH_ACCESS_TOKEN``, else google-auth's default credentials when installed, else
  ``gcloud auth print-access-token``) as the password of user ``oauth2accesstoken``.
- Anything else: ``KAIZEN_REGISTRY_USERNAME``/``KAIZEN_REGISTRY_PASSWORD`` when set, else
  anonymous (a local registry).
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from model_packages.errors import KaizenError
from model_packages.shell import run_quiet

ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
ACR_HOST = re.compile(r"^[a-z0-9]+\.azurecr\.(?:io|cn|us)$")
GAR_HOST = re.compile(r"^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$")
ACR_NULL_USER = "00000000-0000-0000-0000-000000000000"
GOOGLE_USER = "oauth2accesstoken"


class RegistryAuthError(KaizenError):
    """Credentials for a registry could not be obtained."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str  # where they came from, for messages (never the secret)

    def docker_auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def registry_kind(host: str) -> str:
    host = host.split("/", 1)[0].lower()
    if ECR_HOST.match(host):
        return "ecr"
    if ACR_HOST.match(host):
        return "acr"
    if GAR_HOST.match(host):
        return "gar"
    return "generic"


def ecr_credentials(host: str, *, endpoint_url: str | None = None) -> Credentials:
    m = ECR_HOST.match(host.lower())
    if not m:
        raise RegistryAuthError(f"{host} is not an ECR registry host")
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("ecr", region_name=m.group("region"), endpoint_url=endpoint_url)
        resp = client.get_authorization_token(registryIds=[m.group("account")])
    except botocore.exceptions.NoCredentialsError:
        raise RegistryAuthError(
            f"registry {host}: no AWS credentials for ecr:GetAuthorizationToken"
        ) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise RegistryAuthError(
            f"registry {host}: ecr:GetAuthorizationToken failed: {error}"
        ) from None
    data = resp.get("authorizationData") or []
    if not data:
        raise RegistryAuthError(f"registry {host}: ECR returned no authorization data")
    token = base64.b64decode(data[0]["authorizationToken"]).decode()
    username, _, password = token.partition(":")
    if not password:
        raise RegistryAuthError(f"registry {host}: malformed ECR authorization token")
    return Credentials(username, password, "ecr:GetAuthorizationToken")


def azure_access_token(env: Mapping[str, str]) -> tuple[str, str]:
    token = env.get("AZURE_ACCESS_TOKEN")
    if token:
        return token, "AZURE_ACCESS_TOKEN"
    try:
        from azure.identity import DefaultAzureCredential  # type: ignore[import-not-found]

        cred = DefaultAzureCredential()
        return cred.get_token("https://management.azure.com/.default").token, "azure-identity"
    except ImportError:
        pass
    except Exception as error:
        raise RegistryAuthError(f"azure-identity could not get a token: {error}") from None
    token = run_quiet(["az", "account", "get-access-token", "--query", "accessToken", "-o", "tsv"], timeout=60)
    if token:
        return token, "az account get-access-token"
    raise RegistryAuthError(
        "no Microsoft Entra token: set AZURE_ACCESS_TOKEN, install azure-identity or log in with az"
    )


def acr_exchange(
    host: str, aad_token: str, *, base_url: str | None = None, tenant: str | None = None
) -> str:
    """Exchange an Entra access token for an ACR refresh token (POST /oauth2/exchange)."""
    url = (base_url or f"https://{host}").rstrip("/") + "/oauth2/exchange"
    form = {"grant_type": "access_token", "service": host, "access_token": aad_token}
    if tenant:
        form["tenant"] = tenant
    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read().decode())
    except urllib.error.HTTPError as error:
        raise RegistryAuthError(
            f"registry {host}: ACR token exchange refused ({error.code} {error.reason})"
        ) from None
    except (OSError, ValueError) as error:
        raise RegistryAuthError(f"registry {host}: ACR token exchange failed: {error}") from None
    refresh = body.get("refresh_token") if isinstance(body, dict) else None
    if not refresh:
        raise RegistryAuthError(f"registry {host}: ACR token exchange returned no refresh_token")
    return str(refresh)


def acr_credentials(
    host: str, *, env: Mapping[str, str] | None = None, base_url: str | None = None
) -> Credentials:
    env = os.environ if env is None else env
    token, source = azure_access_token(env)
    refresh = acr_exchange(host, token, base_url=base_url, tenant=env.get("AZURE_TENANT_ID"))
    return Credentials(ACR_NULL_USER, refresh, f"ACR /oauth2/exchange ({source})")


def gar_credentials(host: str, *, env: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if env is None else env
    token = env.get("GOOGLE_OAUTH_ACCESS_TOKEN")
    if token:
        return Credentials(GOOGLE_USER, token, "GOOGLE_OAUTH_ACCESS_TOKEN")
    try:
        import google.auth  # type: ignore[import-not-found]
        import google.auth.transport.requests  # type: ignore[import-not-found]

        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds.refresh(google.auth.transport.requests.Request())
        return Credentials(GOOGLE_USER, str(creds.token), "google-auth default credentials")
    except ImportError:
        pass
    except Exception as error:
        raise RegistryAuthError(f"registry {host}: google-auth failed: {error}") from None
    token = run_quiet(["gcloud", "auth", "print-access-token"], timeout=60)
    if token:
        return Credentials(GOOGLE_USER, token, "gcloud auth print-access-token")
    raise RegistryAuthError(
        f"registry {host}: no Google access token: set GOOGLE_OAUTH_ACCESS_TOKEN, install "
        "google-auth or log in with gcloud"
    )


def credentials_for(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for `host` (registry host[:port]), or None for anonymous access."""
    env = os.environ if env is None else env
    user, password = env.get("KAIZEN_REGISTRY_USERNAME"), env.get("KAIZEN_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, password, "KAIZEN_REGISTRY_USERNAME/PASSWORD")
    kind = registry_kind(host)
    if kind == "ecr":
        return ecr_credentials(host)
    if kind == "acr":
        return acr_credentials(host, env=env)
    if kind == "gar":
        return gar_credentials(host, env=env)
    return None
