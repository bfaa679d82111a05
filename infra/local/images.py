"""Model image build + push for the local stack, through the packaging module.

`build_and_push(package_dir, registry=..., base=...)` returns ``(digest-pinned ref, local tag)``.
The packaging module builds (deterministic context, locked wheels, local base) and pushes;
the local registry is plain HTTP on loopback.
"""

from __future__ import annotations

from typing import Any

from model_packages.image.inputs import package_hash

__all__ = ["build_and_push", "package_hash"]  # package_hash: the image input hash `pulumi up` compares


def build_and_push(package_dir: str, *, registry: str, base: str | None) -> tuple[str, str]:
    """Build with `model_packages.image.build.build_package`, push with
    `model_packages.image.registry.push_image`; returns (digest-pinned ref, local tag).

    Registry tags are immutable (model name + version). When a changed package or runtime keeps
    its version (a developer iterating on the local stack), the image goes to the tag
    ``<version>-<content hash>`` instead, so the local stack still converges."""
    from model_packages.image.base import ensure_bases
    from model_packages.image.build import build_package, docker_client
    from model_packages.image.context import Bases
    from model_packages.image.registry import ImmutableTagError, push_image
    from model_packages.image.settings import ImageSettings

    client = docker_client()
    settings = ImageSettings.from_env()
    bases = Bases.choose(base, None, settings) if base else Bases.local()
    if bases.runtime.startswith("kaizen-base/") or bases.builder.startswith("kaizen-base/"):
        ensure_bases(client, log=lambda _m: None, settings=settings)
    built = build_package(package_dir, bases=bases, client=client, settings=settings, source=settings.image_source)
    try:
        pushed = push_image(built.tag, registry, client=client, records_path=None)
    except ImmutableTagError:
        return _push_content_tag(client, built.tag, built.image_id, registry), built.tag
    return pushed.reference, built.tag


def _push_content_tag(client: Any, tag: str, image_id: str, registry: str) -> str:
    repo, _, version = tag.rpartition(":")
    content_tag = f"{version}-{image_id.split(':')[-1][:12]}"
    remote = f"{registry}/{repo}"
    client.images.get(image_id).tag(remote, content_tag)
    digest = None
    for event in client.images.push(remote, content_tag, stream=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"push of {remote}:{content_tag} failed: {event['error']}")
        digest = (event.get("aux") or {}).get("Digest") or digest
    client.images.remove(f"{remote}:{content_tag}", noprune=True)
    if not digest:
        raise RuntimeError(f"push of {remote}:{content_tag} reported no digest")
    return f"{remote}@{digest}"
