"""`kaizen retrain-blob`: the trainer's entry point as an Azure Container Apps job
(infra/azure/retraining.py). Container Apps mounts no Blob Storage, so this stages the data blob
and the champion package from Blob Storage, runs `kaizen retrain`, and uploads what it wrote (the
candidate package if the gate passed, the gate report, run.json) under the candidates prefix.

Authentication is the job's user-assigned managed identity only (no account keys, no SAS): a token
for https://storage.azure.com/ from the Container Apps identity endpoint (IDENTITY_ENDPOINT +
IDENTITY_HEADER, client AZURE_CLIENT_ID), sent as a bearer token to the Blob REST API
(https://learn.microsoft.com/en-us/azure/container-apps/managed-identity#rest-endpoint-reference).
Standard library only: the trainer image needs no Azure SDK.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model_packages.errors import KaizenError

STORAGE_RESOURCE = "https://storage.azure.com/"
BLOB_API_VERSION = "2021-08-06"  # Put Blob up to 5000 MiB; OAuth needs >= 2017-11-09
IDENTITY_API_VERSION = "2019-08-01"
ENV_KEYS = ("KAIZEN_BLOB_ACCOUNT_URL", "KAIZEN_DATA_CONTAINER", "KAIZEN_DATA_BLOB", "KAIZEN_PACKAGES_CONTAINER",
            "KAIZEN_CHAMPION_PREFIX", "KAIZEN_CANDIDATES_PREFIX", "KAIZEN_PIPELINE")
_CHUNK = 1 << 20


class BlobError(KaizenError):
    """Blob Storage or the managed identity refused a request, or a setting is missing."""


def identity_token(env: Mapping[str, str], resource: str = STORAGE_RESOURCE, timeout: float = 30) -> str:
    endpoint, header = env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER")
    if not endpoint or not header:
        raise BlobError("no managed identity: IDENTITY_ENDPOINT/IDENTITY_HEADER are unset (run as a Container "
                        "Apps job with a user-assigned identity)")
    query = {"resource": resource, "api-version": IDENTITY_API_VERSION}
    if env.get("AZURE_CLIENT_ID"):
        query["client_id"] = env["AZURE_CLIENT_ID"]
    request = urllib.request.Request(f"{endpoint}?{urllib.parse.urlencode(query)}",
                                     headers={"X-IDENTITY-HEADER": header})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            token = json.load(response).get("access_token")
    except (urllib.error.URLError, ValueError) as error:
        raise BlobError(f"the managed identity endpoint gave no token for {resource}: {error}") from None
    if not isinstance(token, str) or not token:
        raise BlobError(f"the managed identity endpoint answered without an access_token for {resource}")
    return token


def _check_account_url(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost")  # Azurite, tests
    if parsed.scheme == "https" or (parsed.scheme == "http" and loopback):
        return url.rstrip("/")
    raise BlobError(f"KAIZEN_BLOB_ACCOUNT_URL {url!r}: https only (http is accepted for a loopback emulator)")


@dataclass(frozen=True)
class BlobClient:
    account_url: str  # https://<account>.blob.core.windows.net (or an emulator's account URL)
    token: str
    timeout: float = 300

    def _url(self, container: str, blob: str = "", **query: str) -> str:
        path = urllib.parse.quote(f"{container}/{blob}" if blob else container)
        return f"{_check_account_url(self.account_url)}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def _request(self, method: str, url: str, data: object = None, headers: Mapping[str, str] | None = None):
        request = urllib.request.Request(url, method=method, data=data,  # type: ignore[arg-type]
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "x-ms-version": BLOB_API_VERSION, **(headers or {})})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            code = error.headers.get("x-ms-error-code", "")
            raise BlobError(f"{method} {url.split('?')[0]}: HTTP {error.code} {code}".rstrip()) from None
        except urllib.error.URLError as error:
            raise BlobError(f"{method} {url.split('?')[0]}: {error.reason}") from None

    def download(self, container: str, blob: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        with self._request("GET", self._url(container, blob)) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        partial.replace(dest)

    def list(self, container: str, prefix: str) -> Iterator[str]:
        marker = ""
        while True:
            query = {"restype": "container", "comp": "list", "prefix": prefix, **({"marker": marker} if marker else {})}
            with self._request("GET", self._url(container, **query)) as response:
                root = ET.fromstring(response.read())
            for name in root.iterfind("./Blobs/Blob/Name"):
                if name.text:
                    yield name.text
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return

    def upload(self, container: str, blob: str, source: Path) -> None:
        with source.open("rb") as body:
            self._request("PUT", self._url(container, blob), data=body, headers={
                "x-ms-blob-type": "BlockBlob", "Content-Length": str(source.stat().st_size),
                "Content-Type": "application/octet-stream"}).close()


def _relative(name: str, prefix: str) -> PurePosixPath:
    rel = PurePosixPath(name.removeprefix(prefix))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BlobError(f"blob {name!r} does not name a file under {prefix!r}")
    return rel


def stage_and_run(env: Mapping[str, str], work: Path, run: Callable[[Path, Path, Path, Path], None],
                  client: BlobClient | None = None) -> list[str]:
    """Download data and champion under `work`, call run(pipeline, data, champion, out), upload
    `out` under the candidates prefix. Returns the uploaded blob names. Nothing is uploaded when
    `run` raises."""
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if missing:
        raise BlobError(f"missing settings {missing} (set by infra/azure/retraining.py)")
    data_blob, champion_prefix = env["KAIZEN_DATA_BLOB"], env["KAIZEN_CHAMPION_PREFIX"]
    candidates, packages = env["KAIZEN_CANDIDATES_PREFIX"], env["KAIZEN_PACKAGES_CONTAINER"]
    if not champion_prefix.endswith("/") or not candidates.endswith("/"):
        raise BlobError("KAIZEN_CHAMPION_PREFIX and KAIZEN_CANDIDATES_PREFIX must end with '/'")
    client = client or BlobClient(_check_account_url(env["KAIZEN_BLOB_ACCOUNT_URL"]), identity_token(env))
    data = work / "data" / PurePosixPath(data_blob).name
    client.download(env["KAIZEN_DATA_CONTAINER"], data_blob, data)
    champion = work / "champion"
    names = list(client.list(packages, champion_prefix))
    if not names:
        raise BlobError(f"the champion {packages}/{champion_prefix} is empty: the deployed version is not in the "
                        "package store")
    for name in names:
        client.download(packages, name, champion / _relative(name, champion_prefix))
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    run(Path(env["KAIZEN_PIPELINE"]), data, champion, out)
    uploaded = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = candidates + path.relative_to(out).as_posix()
        client.upload(packages, name, path)
        uploaded.append(name)
    return uploaded


def retrain_blob_command() -> None:
    """Stage data and the champion from Blob Storage with the job's managed identity, retrain, upload
    the result under the candidates prefix (the Azure retraining job's entry point)."""
    import tempfile

    import typer
    from rich.console import Console

    from model_packages.retrain.commands import retrain_command

    def run(pipeline: Path, data: Path, champion: Path, out: Path) -> None:
        retrain_command(pipeline_file=pipeline, data=data, out=out, champion=champion, stack=None,
                        project_dir=Path("."), cache=out.parent / "cache", param=None, reject_ok=True, replay=None)

    work = Path(tempfile.mkdtemp(prefix="kaizen-blob-"))
    try:
        for name in stage_and_run(os.environ, work, run):
            typer.echo(name)
    except BlobError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
