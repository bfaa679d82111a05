"""Blob Storage with a managed identity, standard library only (the serving and trainer images carry
no Azure SDK): a token for https://storage.azure.com/ from the Container Apps identity endpoint
(IDENTITY_ENDPOINT + IDENTITY_HEADER, client AZURE_CLIENT_ID,
https://learn.microsoft.com/en-us/azure/container-apps/managed-identity#rest-endpoint-reference),
sent as a bearer token to the Blob REST API (Get Blob, List Blobs, Put Blob). No account keys, no SAS.
Used by `kaizen retrain-blob` (model_packages/retrain/blob.py) and the image's `batch-blob`
(model_packages/batch/blob_entry.py).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from model_packages.errors import KaizenError

STORAGE_RESOURCE = "https://storage.azure.com/"
BLOB_API_VERSION = "2021-08-06"  # Put Blob up to 5000 MiB; OAuth needs >= 2017-11-09
IDENTITY_API_VERSION = "2019-08-01"
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


def check_account_url(url: str) -> str:
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
        return f"{check_account_url(self.account_url)}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

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


def relative_name(name: str, prefix: str) -> PurePosixPath:
    rel = PurePosixPath(name.removeprefix(prefix))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BlobError(f"blob {name!r} does not name a file under {prefix!r}")
    return rel
