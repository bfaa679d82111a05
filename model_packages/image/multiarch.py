"""Multi-platform images: one image per platform, one OCI image index that deploys them all.

Docker's classic builder (and the Debian 20.10 engine here) keeps one image per tag, so a
multi-platform build makes one local image per platform, tagged ``kaizen/NAME:VERSION-<arch>``
(:func:`platform_tag`). :func:`push_index` pushes each of them by digest under the registry tag
``VERSION-<arch>``, then PUTs an OCI image index (``application/vnd.oci.image.index.v1+json``)
listing them with their platforms under the tag ``VERSION``. The index digest is what deploys:
an arm64 node pulls the arm64 image, an x86 node the amd64 one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_packages.image import records
from model_packages.image.auth import credentials_for
from model_packages.image.base import arch_for_platform
from model_packages.image.refs import tag_for
from model_packages.image.registry import (
    MANIFEST_TYPES,
    ImmutableTagError,
    PushError,
    PushResult,
    Registry,
    RegistryClient,
    image_record,
    push_image,
    utc_now,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class IndexResult:
    reference: str  # REGISTRY/kaizen/NAME@sha256:<index digest>
    digest: str
    repository: str
    tag: str
    platforms: dict[str, str]  # platform -> digest-pinned reference of its image
    pushed: bool
    seconds: float = 0.0
    record: records.ImageRecord | None = None


def parse_platforms(text: str) -> list[str]:
    """`linux/amd64,linux/arm64` -> ["linux/amd64", "linux/arm64"] (validated, no duplicates)."""
    out: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        platform = f"linux/{arch_for_platform(part)}"
        if platform in out:
            raise PushError(f"platform {platform} is listed twice in {text!r}")
        out.append(platform)
    if not out:
        raise PushError(f"no platform in {text!r}: e.g. linux/amd64,linux/arm64")
    return out


def platform_tag(tag: str, platform: str) -> str:
    """`kaizen/iris:1.0.0`, `linux/arm64` -> `kaizen/iris:1.0.0-arm64`."""
    return f"{tag}-{arch_for_platform(platform)}"


def index_manifest(entries: Sequence[tuple[str, dict[str, Any]]],
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The OCI image index of `(platform, descriptor)` pairs (descriptor: mediaType, digest, size)."""
    manifests = []
    for platform, descriptor in entries:
        os_name, arch = platform.split("/", 1)
        manifests.append({**descriptor, "platform": {"architecture": arch, "os": os_name}})
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    if annotations:
        body["annotations"] = annotations
    return body


def put_manifest(reg: RegistryClient, repo: str, tag: str, body: bytes, media_type: str) -> str:
    """PUT a manifest (or index) under `tag`; returns its digest (checked against the registry's)."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    resp = reg._request("PUT", f"/v2/{repo}/manifests/{tag}", data=body,
                        headers={"Content-Type": media_type})
    if resp.status_code not in (200, 201):
        raise PushError(f"registry {reg.registry.host}: PUT manifest {repo}:{tag} answered "
                        f"{resp.status_code} {resp.text[:300]}")
    answered = resp.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise PushError(f"registry {reg.registry.host} stored {repo}:{tag} as {answered}, not {digest}")
    return digest


def _descriptor(reg: RegistryClient, repo: str, digest: str) -> dict[str, Any]:
    """mediaType, digest and size of a manifest in the registry (its bytes hashed again)."""
    resp = reg._request("GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES})
    if resp.status_code != 200 or "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
        raise PushError(f"registry {reg.registry.host}: manifest {repo}@{digest} is not readable "
                        f"as pushed ({resp.status_code})")
    media_type = json.loads(resp.content.decode()).get("mediaType") or resp.headers.get("Content-Type")
    return {"mediaType": media_type, "digest": digest, "size": len(resp.content)}


def push_index(
    image: str,
    platforms: Sequence[str],
    registry_url: str,
    *,
    client: Any = None,
    records_path: str | Path | None = "auto",
    log: Callable[[str], None] = lambda _msg: None,
    retries: int = 4,
    backoff: float = 1.0,
) -> IndexResult:
    """Push the per-platform images of `image` (``IMAGE-<arch>`` locally) and their index.

    Each platform image must have been built for its platform (its config says so). The index
    tag is immutable like an image tag: an existing one with other content is refused."""
    started = time.monotonic()
    if client is None:
        from model_packages.image.build import docker_client

        client = docker_client()
    pushes: list[tuple[str, PushResult]] = []
    labels: dict[str, str] = {}
    for platform in platforms:
        local = platform_tag(image, platform)
        try:
            attrs = client.images.get(local).attrs
        except Exception:  # docker.errors.ImageNotFound
            raise PushError(f"image {local} does not exist locally: build it with "
                            f"`kaizen build --platform {','.join(platforms)}`") from None
        have = f"{attrs.get('Os', 'linux')}/{attrs.get('Architecture', '')}"
        if have != platform:
            raise PushError(f"image {local} is {have}, not {platform}")
        labels = dict(attrs["Config"].get("Labels") or {})
        version = tag_for(labels.get("io.kaizen.model.version", ""))
        if not version:
            raise PushError(f"image {local} is not a Kaizen model image (no io.kaizen.model.* labels)")
        result = push_image(local, registry_url, client=client, records_path=None, log=log,
                            retries=retries, backoff=backoff,
                            remote_tag=f"{version}-{arch_for_platform(platform)}")
        log(f"{platform}: {result.reference}")
        pushes.append((platform, result))
    registry = Registry.parse(registry_url)
    reg = RegistryClient(registry, credentials_for(registry.host))
    repo = pushes[0][1].repository.split("/", 1)[1]
    if any(r.repository != pushes[0][1].repository for _, r in pushes):
        raise PushError("the platform images belong to different models")
    tag = tag_for(labels["io.kaizen.model.version"])
    entries = []
    for platform, result in pushes:
        entries.append((platform, _descriptor(reg, repo, result.digest)))
    annotations = {k: v for k, v in labels.items()
                   if k in ("org.opencontainers.image.version", "org.opencontainers.image.source",
                            "org.opencontainers.image.revision", "org.opencontainers.image.created")}
    body = json.dumps(index_manifest(entries, annotations), sort_keys=True,
                      separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    existing = reg.manifest(repo, tag)
    pushed = True
    if existing is not None:
        if existing[0] != digest:
            raise ImmutableTagError(
                f"registry {registry.host}: tag {repo}:{tag} already points to {existing[0]}, not "
                f"to the index {digest}; tags are immutable: bump the model version")
        pushed = False
    else:
        put_manifest(reg, repo, tag, body, OCI_INDEX)
    remote = f"{registry.host}/{repo}"
    result = IndexResult(
        reference=f"{remote}@{digest}", digest=digest, repository=remote, tag=tag,
        platforms={p: r.reference for p, r in pushes}, pushed=pushed,
        seconds=time.monotonic() - started,
    )
    result.record = image_record(
        labels, registry=registry.host, repository=repo, tag=tag, digest=digest, pushed_at=utc_now(),
        media_type=OCI_INDEX, platforms=result.platforms,
    )
    if records_path is not None:
        records.record_image(result.record, None if records_path == "auto" else records_path)
        from model_packages.audit import provenance

        provenance.record_push(result.reference, labels)
    return result
