"""Edge bundles as OCI artifacts: push by digest, pull by digest (ORAS-compatible).

The manifest is an OCI image manifest with an ``artifactType`` and the empty config, one layer per
bundle file with its own media type and an ``org.opencontainers.image.title`` annotation (the file
name), as ORAS writes and reads them: ``oras pull REGISTRY/kaizen/NAME/edge@sha256:…`` gives back
the bundle directory. Repository ``kaizen/<name>/edge``, tag ``<version>`` (``<version>-int8`` when
quantised); tags are immutable like image tags, and the digest is what a fleet deploys.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_packages.edge.bundle import FILES, EdgeError
from model_packages.image.auth import credentials_for
from model_packages.image.registry import PushError, Registry, RegistryClient

ARTIFACT_TYPE = "application/vnd.kaizen.edge.bundle.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2, "data": base64.b64encode(b"{}").decode()}
MEDIA_TYPES = {
    "model.onnx": "application/vnd.kaizen.model.onnx",
    "schema.json": "application/vnd.kaizen.schema.v1+json",
    "baseline.json": "application/vnd.kaizen.baseline.v1+json",
    "bundle.json": "application/vnd.kaizen.edge.bundle.v1+json",
}
TITLE = "org.opencontainers.image.title"


@dataclass
class BundlePush:
    reference: str  # REGISTRY/kaizen/NAME/edge@sha256:…
    digest: str
    repository: str
    tag: str
    pushed: bool
    bytes_pushed: int


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _client(registry_url: str) -> RegistryClient:
    registry = Registry.parse(registry_url)
    reg = RegistryClient(registry, credentials_for(registry.host), timeout=60)
    reg.check()
    return reg


def _upload_blob(reg: RegistryClient, repo: str, data: bytes) -> bool:
    """Upload `data` unless the registry has it; True when it was uploaded."""
    digest = _digest(data)
    if reg._request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return False
    start = reg._request("POST", f"/v2/{repo}/blobs/uploads/")
    location = start.headers.get("Location")
    if start.status_code != 202 or not location:
        raise PushError(f"registry {reg.registry.host}: starting a blob upload to {repo} answered "
                        f"{start.status_code} {start.text[:200]}")
    if location.startswith("/"):
        location = reg.registry.base_url + location
    path = location.removeprefix(reg.registry.base_url)
    sep = "&" if "?" in path else "?"
    done = reg._request("PUT", f"{path}{sep}digest={digest}", data=data,
                        headers={"Content-Type": "application/octet-stream"})
    if done.status_code != 201:
        raise PushError(f"registry {reg.registry.host}: blob upload to {repo} answered "
                        f"{done.status_code} {done.text[:200]}")
    return True


def bundle_manifest(bundle: Path, info: dict[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    """The artifact manifest (canonical bytes) and the blobs it references, by digest."""
    blobs: dict[str, bytes] = {EMPTY_CONFIG["digest"]: b"{}"}
    layers = []
    for name in FILES:
        data = (bundle / name).read_bytes()
        digest = _digest(data)
        blobs[digest] = data
        layers.append({"mediaType": MEDIA_TYPES[name], "digest": digest, "size": len(data),
                       "annotations": {TITLE: name}})
    annotations = {
        "org.opencontainers.image.title": info["name"],
        "org.opencontainers.image.version": info["version"],
        "io.kaizen.model.name": info["name"],
        "io.kaizen.model.version": info["version"],
        "io.kaizen.model.artifact-sha256": info["artifact_sha256"],
        "io.kaizen.edge.quantized": "true" if info.get("quantization") else "false",
        "io.kaizen.edge.parity-max-abs-diff": repr(info["parity"]["max_abs_diff"]),
    }
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                "config": EMPTY_CONFIG, "layers": layers, "annotations": annotations}
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(), blobs


def push_bundle(bundle_dir: str | Path, registry_url: str, *, audit: bool = True) -> BundlePush:
    """Push a bundle as an OCI artifact; returns its digest-pinned reference."""
    from model_packages.edge.runtime import read_bundle

    bundle = Path(bundle_dir)
    info, _ = read_bundle(bundle)  # only a complete, unaltered bundle is pushed
    reg = _client(registry_url)
    repo = f"kaizen/{info['name']}/edge"
    tag = info["version"].replace("+", "_") + ("-int8" if info.get("quantization") else "")
    body, blobs = bundle_manifest(bundle, info)
    digest = _digest(body)
    existing = reg.manifest(repo, tag)
    remote = f"{reg.registry.host}/{repo}"
    if existing is not None and existing[0] != digest:
        raise PushError(f"registry {reg.registry.host}: tag {repo}:{tag} already points to {existing[0]}, "
                        f"not to this bundle ({digest}); tags are immutable: bump the model version")
    pushed = 0
    if existing is None:
        for data in blobs.values():
            if _upload_blob(reg, repo, data):
                pushed += len(data)
        resp = reg._request("PUT", f"/v2/{repo}/manifests/{tag}", data=body,
                            headers={"Content-Type": OCI_MANIFEST})
        if resp.status_code != 201:
            raise PushError(f"registry {reg.registry.host}: PUT manifest {repo}:{tag} answered "
                            f"{resp.status_code} {resp.text[:300]}")
        answered = resp.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise PushError(f"registry {reg.registry.host} stored the bundle as {answered}, not {digest}")
    result = BundlePush(reference=f"{remote}@{digest}", digest=digest, repository=remote, tag=tag,
                        pushed=existing is None, bytes_pushed=pushed)
    if audit:
        import getpass

        from model_packages.audit import trail

        trail.append("edge_bundle_push", subject=f"{info['name']}:{info['version']}", actor=getpass.getuser(),
                     model=info["name"], version=info["version"], reference=result.reference,
                     artifact_type=ARTIFACT_TYPE, artifact_sha256=info["artifact_sha256"],
                     quantization=info.get("quantization"), parity=info["parity"],
                     pushed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return result


def pull_bundle(reference: str, out_dir: str | Path) -> Path:
    """Pull `REGISTRY/REPO@sha256:…` into `out_dir`; every byte checked against its digest."""
    host, _, rest = reference.partition("/")
    repo, sep, digest = rest.partition("@")
    if not sep or not digest.startswith("sha256:"):
        raise EdgeError(f"{reference!r} is not pinned by digest: pull REGISTRY/REPO@sha256:…")
    reg = _client(host)
    resp = reg._request("GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    if resp.status_code != 200:
        raise EdgeError(f"registry {host}: {repo}@{digest} answered {resp.status_code}")
    if _digest(resp.content) != digest:
        raise EdgeError(f"registry {host}: the manifest of {repo}@{digest} does not match its digest")
    manifest = json.loads(resp.content.decode())
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise EdgeError(f"{reference} is not a Kaizen edge bundle (artifactType "
                        f"{manifest.get('artifactType')!r})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:
        name = (layer.get("annotations") or {}).get(TITLE, "")
        if name not in FILES:
            raise EdgeError(f"{reference}: unexpected layer {name!r}")
        blob = reg._request("GET", f"/v2/{repo}/blobs/{layer['digest']}", allow_redirects=True)
        if blob.status_code != 200 or _digest(blob.content) != layer["digest"]:
            raise EdgeError(f"registry {host}: blob {name} of {reference} is missing or altered")
        (out / name).write_bytes(blob.content)
    return out
