"""Push a model image and pin it by digest.

``push_image`` pushes a local ``kaizen/<name>:<version>`` image to ``REGISTRY/kaizen/<name>``
and returns the digest-pinned reference ``REGISTRY/kaizen/<name>@sha256:…``, recorded in
``kaizen-images.json`` (:mod:`model_packages.image.records`) for the stacks.

- Immutable tags: when the tag already exists in the registry, its manifest's config digest
  is compared with the local image id; the same image is not pushed again, a different one is
  refused (:class:`ImmutableTagError`).
- Errors name the registry and the cause. Transient ones (connection refused/reset, time-outs,
  5xx, 429) are retried with exponential backoff; authentication and permission errors are not.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import requests

from model_packages.errors import KaizenError
from model_packages.image import records
from model_packages.image.auth import Credentials, credentials_for
from model_packages.image.refs import image_repository, tag_for

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|timeout|timed out|temporarily|"
    r"\bEOF\b|unexpected eof|too many requests|\b429\b|\b50[0234]\b|service unavailable|"
    r"bad gateway|internal server error|i/o timeout|no route to host",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"unauthori[sz]ed|authentication required|denied|forbidden|no basic auth|\b401\b|\b403\b",
    re.IGNORECASE,
)

T = TypeVar("T")


class PushError(KaizenError):
    """A push failed; the message names the registry and the cause."""


class ImmutableTagError(PushError):
    """The tag already points to a different image in the registry."""


@dataclass(frozen=True)
class Registry:
    host: str  # host[:port], no scheme
    scheme: str  # http for loopback registries, https otherwise

    @classmethod
    def parse(cls, url: str) -> Registry:
        text = url.strip().rstrip("/")
        scheme = None
        if "://" in text:
            scheme, _, text = text.partition("://")
        host = text.split("/", 1)[0]
        if not host:
            raise PushError(f"invalid registry {url!r}")
        if "/" in text:
            raise PushError(
                f"registry {url!r} has a path; pass only the host[:port] (images go to "
                "REGISTRY/kaizen/<name>)"
            )
        if scheme is None:
            bare = host.rsplit(":", 1)[0]
            loopback = bare in {"localhost", "::1", "[::1]"} or bare.startswith("127.")
            scheme = "http" if loopback else "https"
        return cls(host, scheme)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"


@dataclass
class PushResult:
    reference: str  # REGISTRY/REPO@sha256:...
    digest: str
    repository: str  # REGISTRY/REPO
    tag: str
    image_id: str
    pushed: bool  # False when the tag already held this very image
    bytes_pushed: int = 0
    layers_pushed: int = 0
    layers_total: int = 0
    seconds: float = 0.0
    attempts: int = 1
    record: records.ImageRecord | None = None  # what `kaizen push` records


class RegistryClient:
    """Just enough of the Registry HTTP API V2 (anonymous, basic or bearer-token auth)."""

    def __init__(self, registry: Registry, creds: Credentials | None, timeout: float = 10.0):
        self.registry = registry
        self.creds = creds
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self._token: str | None = None

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.registry.base_url + path
        headers = {**kwargs.pop("headers", {}), **self._auth_headers()}
        basic = (self.creds.username, self.creds.password) if self.creds else None
        resp = self.session.request(
            method, url, headers=headers, timeout=self.timeout, auth=None if self._token else basic,
            **kwargs,
        )
        challenge = resp.headers.get("WWW-Authenticate", "")
        if resp.status_code == 401 and challenge.lower().startswith("bearer") and not self._token:
            self._token = self._fetch_token(challenge)
            headers.update(self._auth_headers())
            resp = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        return resp

    def _fetch_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise PushError(f"registry {self.registry.host}: bearer challenge without realm")
        basic = (self.creds.username, self.creds.password) if self.creds else None
        resp = self.session.get(realm, params=params, auth=basic, timeout=self.timeout)
        if resp.status_code in (401, 403):
            raise PushError(
                f"registry {self.registry.host} refused the credentials"
                f"{' from ' + self.creds.source if self.creds else ' (anonymous)'}: "
                f"{resp.status_code} unauthorized"
            )
        resp.raise_for_status()
        body = resp.json()
        return str(body.get("token") or body.get("access_token"))

    def check(self) -> None:
        """GET /v2/: reachable and accepting our credentials, else PushError naming the cause."""
        try:
            resp = self._request("GET", "/v2/")
        except requests.ConnectionError as error:
            raise PushError(
                f"registry {self.registry.host} is unreachable: {_cause(error)}"
            ) from None
        except requests.Timeout:
            raise PushError(f"registry {self.registry.host} is unreachable: timed out") from None
        if resp.status_code in (401, 403):
            who = f"credentials from {self.creds.source}" if self.creds else "anonymous access"
            raise PushError(
                f"registry {self.registry.host} is unauthorised: it refused {who} "
                f"({resp.status_code})"
            )
        if resp.status_code >= 500:
            raise PushError(
                f"registry {self.registry.host} failed: {resp.status_code} {resp.reason}"
            )
        if resp.status_code != 200:
            raise PushError(
                f"registry {self.registry.host} is not a Docker registry (GET /v2/ answered "
                f"{resp.status_code})"
            )

    def blob_json(self, repo: str, digest: str) -> dict[str, Any] | None:
        resp = self._request("GET", f"/v2/{repo}/blobs/{digest}", allow_redirects=True)
        if resp.status_code != 200:
            return None
        try:
            data = json.loads(resp.content.decode())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def manifest(self, repo: str, reference: str) -> tuple[str, dict[str, Any]] | None:
        """(digest, manifest) of repo:reference, or None when it does not exist."""
        resp = self._request(
            "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
        )
        if resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            raise PushError(
                f"registry {self.registry.host} is unauthorised to read {repo}:{reference} "
                f"({resp.status_code})"
            )
        if resp.status_code >= 400:
            raise PushError(
                f"registry {self.registry.host}: GET manifest {repo}:{reference} answered "
                f"{resp.status_code} {resp.reason}"
            )
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not digest:
            import hashlib

            digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
        return digest, json.loads(resp.content.decode())


_RUNTIME_CONFIG = ("Env", "Entrypoint", "Cmd", "User", "Labels", "WorkingDir", "StopSignal")


def _same_content(reg: RegistryClient, repo: str, config_digest: str | None, image: Any) -> bool:
    """The remote image has the same layers and runtime configuration as the local one (a clean
    rebuild differs only in the engine's timestamps): the tag already holds this image."""
    if not config_digest:
        return False
    remote = reg.blob_json(repo, config_digest)
    if remote is None:
        return False
    local = image.attrs
    if (remote.get("rootfs") or {}).get("diff_ids") != list(local["RootFS"]["Layers"]):
        return False
    mine, theirs = local.get("Config") or {}, remote.get("config") or {}
    return all((mine.get(k) or None) == (theirs.get(k) or None) for k in _RUNTIME_CONFIG)


def _cause(error: BaseException) -> str:
    text = str(error)
    for needle in ("Connection refused", "Name or service not known", "timed out", "reset"):
        if needle in text:
            return needle.lower()
    return text[-200:]


def is_transient(message: str) -> bool:
    return bool(TRANSIENT.search(message)) and not AUTH.search(message)


def _local_image(client: Any, image_ref: str) -> Any:
    import docker.errors

    try:
        return client.images.get(image_ref)
    except docker.errors.ImageNotFound:
        raise PushError(f"image {image_ref} does not exist locally (build it first)") from None


def _target(image: Any, image_ref: str) -> tuple[str, str, dict[str, str]]:
    """(repository, tag, labels) in the registry: kaizen/<model name>:<model version>."""
    labels = dict(image.attrs["Config"].get("Labels") or {})
    name = labels.get("io.kaizen.model.name")
    version = labels.get("io.kaizen.model.version")
    if not name or not version:
        raise PushError(
            f"image {image_ref} is not a Kaizen model image (no io.kaizen.model.* labels): "
            "build it with `kaizen build`"
        )
    return image_repository(name), tag_for(version), labels


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_record(labels: Mapping[str, str], *, registry: str, repository: str, tag: str, digest: str,
                 pushed_at: str, image_id: str | None = None, built_at: str | None = None,
                 **index: Any) -> records.ImageRecord:
    """The `kaizen-images.json` entry of an image pushed to `registry`/`repository`@`digest`, from its
    labels (`context.oci_labels`); `index`: media_type and platforms of a multi-platform index."""
    return records.ImageRecord.parse({
        "model": labels.get("io.kaizen.model.name"),
        "version": labels.get("io.kaizen.model.version"),
        "reference": f"{registry}/{repository}@{digest}",
        "registry": registry,
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "image_id": image_id,
        "artifact_sha256": labels.get("io.kaizen.model.artifact-sha256"),
        "built_at": built_at,
        "created": labels.get("org.opencontainers.image.created"),
        "pushed_at": pushed_at,
        **index,
    })


def push_image(
    image_ref: str,
    registry_url: str,
    *,
    client: Any = None,
    records_path: str | Path | None = "auto",
    credentials: Credentials | None = None,
    use_default_credentials: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    log: Callable[[str], None] = lambda _msg: None,
    sleep: Callable[[float], None] = time.sleep,
    remote_tag: str | None = None,
) -> PushResult:
    """Push `image_ref` to `registry_url`; returns the digest-pinned reference.

    The registry tag is the model version (`remote_tag` overrides it: the per-platform images of
    a multi-platform push). The result is recorded in `records_path` ("auto": $KAIZEN_IMAGES_FILE
    or ./kaizen-images.json; None: not recorded)."""
    if client is None:
        from model_packages.image.build import docker_client

        client = docker_client()
    registry = Registry.parse(registry_url)
    image = _local_image(client, image_ref)
    repo, tag, labels = _target(image, image_ref)
    tag = remote_tag or tag
    creds = credentials
    if creds is None and use_default_credentials:
        creds = credentials_for(registry.host)
    reg = RegistryClient(registry, creds)
    remote = f"{registry.host}/{repo}"
    started = time.monotonic()

    def attempt_check() -> tuple[str, dict[str, Any]] | None:
        reg.check()
        return reg.manifest(repo, tag)

    existing, attempts = _with_retries(attempt_check, registry, retries, backoff, log, sleep)
    if existing is not None:
        digest, manifest = existing
        config_digest = (manifest.get("config") or {}).get("digest")
        if config_digest != image.id and not _same_content(reg, repo, config_digest, image):
            raise ImmutableTagError(
                f"registry {registry.host}: tag {repo}:{tag} already points to {digest} "
                f"(image {config_digest}), not to {image.id}; tags are immutable: bump the "
                "model version"
            )
        log(f"{remote}:{tag} already holds this image ({digest}); nothing to push")
        result = PushResult(
            reference=f"{remote}@{digest}", digest=digest, repository=remote, tag=tag,
            image_id=image.id, pushed=False, layers_total=len(manifest.get("layers", [])),
            seconds=time.monotonic() - started, attempts=attempts,
        )
    else:
        if not image.tag(remote, tag):
            raise PushError(f"could not tag {image_ref} as {remote}:{tag}")
        auth_config = creds.docker_auth_config() if creds else None

        def attempt_push() -> tuple[str, set[str]]:
            return _docker_push(client, remote, tag, auth_config, registry)

        (digest, pushed_ids), more = _with_retries(
            attempt_push, registry, retries, backoff, log, sleep
        )
        attempts += more - 1
        fetched = reg.manifest(repo, digest)
        if fetched is None:
            raise PushError(f"registry {registry.host}: pushed manifest {digest} is not readable")
        _, manifest = fetched
        layer_sizes = [int(layer["size"]) for layer in manifest.get("layers", [])]
        diff_ids = list(image.attrs["RootFS"]["Layers"])
        pushed_bytes = 0
        pushed_layers = 0
        for diff_id, size in zip(diff_ids, layer_sizes, strict=False):
            if diff_id.split(":", 1)[-1][:12] in pushed_ids:
                pushed_bytes += size
                pushed_layers += 1
        pushed_bytes += int((manifest.get("config") or {}).get("size", 0))
        result = PushResult(
            reference=f"{remote}@{digest}", digest=digest, repository=remote, tag=tag,
            image_id=image.id, pushed=True, bytes_pushed=pushed_bytes,
            layers_pushed=pushed_layers, layers_total=len(layer_sizes),
            seconds=time.monotonic() - started, attempts=attempts,
        )
    result.record = image_record(
        labels, registry=registry.host, repository=repo, tag=tag, digest=result.digest, image_id=image.id,
        built_at=str(image.attrs.get("Created") or "")[:19] + "Z", pushed_at=utc_now(),
    )
    if records_path is not None:
        # "auto": $KAIZEN_IMAGES_FILE, else ./kaizen-images.json; None: do not record.
        records.record_image(result.record, None if records_path == "auto" else records_path)
        # A recorded push is also audited: signed SLSA provenance plus an `image_push` record.
        from model_packages.audit import provenance

        provenance.record_push(result.reference, labels)
    return result


def _with_retries(
    fn: Callable[[], T],
    registry: Registry,
    retries: int,
    backoff: float,
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> tuple[T, int]:
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except ImmutableTagError:
            raise
        except (PushError, requests.RequestException) as error:
            message = str(error)
            if isinstance(error, requests.RequestException):
                message = f"registry {registry.host}: {_cause(error)}"
            if attempt > retries or not is_transient(message):
                if attempt > 1:
                    message += f" (after {attempt} attempts)"
                raise PushError(message) from None
            delay = backoff * (2 ** (attempt - 1))
            log(f"transient error, retrying in {delay:.1f}s: {message}")
            sleep(delay)


def _docker_push(
    client: Any,
    remote: str,
    tag: str,
    auth_config: dict[str, str] | None,
    registry: Registry,
) -> tuple[str, set[str]]:
    """docker push through the engine; returns (manifest digest, ids of layers uploaded)."""
    import docker.errors

    pushed: set[str] = set()
    digest: str | None = None
    try:
        stream = client.api.push(remote, tag=tag, stream=True, decode=True, auth_config=auth_config)
        for event in stream:
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail") or {}
                cause = str(event.get("error") or detail.get("message") or event).strip()
                raise PushError(f"push to registry {registry.host} failed: {cause}")
            status = str(event.get("status", ""))
            if status == "Pushed" and event.get("id"):
                pushed.add(str(event["id"]))
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as error:
        raise PushError(f"push to registry {registry.host} failed: {error.explanation}") from None
    if digest is None:
        raise PushError(f"push to registry {registry.host} returned no digest")
    return digest, pushed
