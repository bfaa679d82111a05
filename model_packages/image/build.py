"""Run a build: a generated build context -> a local image, through docker-py.

The image is tagged only after the whole build succeeded, so a failed build never leaves a
half-tagged image; intermediate containers are always removed (``forcerm``). Every build runs
with ``network_mode="host"`` (no bridge network on these machines) and never reaches an index:
the context already holds the locked wheels.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from model_packages import verify
from model_packages.errors import KaizenError
from model_packages.image.context import (
    SYSTEM_PACKAGES,
    Bases,
    context_tar,
    flavor_for,
    generate_context,
)
from model_packages.image.settings import DEFAULT_SETTINGS, ImageSettings
from model_packages.manifest import Manifest

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class BuildError(KaizenError):
    """The image build failed; the message carries the failing step and its output."""


@dataclass
class BuildResult:
    image_id: str
    tag: str
    layers: list[str]
    size: int
    seconds: float
    labels: dict[str, str] = field(default_factory=dict)
    steps_cached: int = 0
    steps_total: int = 0
    platform: str = "linux/amd64"


def docker_client(timeout: int = 600) -> Any:
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as error:  # docker.errors.DockerException, requests errors
        raise BuildError(
            f"cannot reach the Docker engine ({error}); start it with scripts/start-docker.sh"
        ) from None
    return client


class _Progress:
    """Rich progress over build steps; plain lines when there is no terminal."""

    def __init__(self, title: str, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[title]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=None, title=self.title)
        return self

    def step(self, number: int, total: int, text: str) -> None:
        if self._progress is not None:
            short = text if len(text) <= 60 else text[:57] + "..."
            self._progress.update(self._task, completed=number - 1, total=total, description=short)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            if exc[0] is None and task.total:
                self._progress.update(self._task, completed=task.total, description="done")
            self._progress.__exit__(*exc)


class Buildable(Protocol):
    """A generated build context: a model image's (BuildContext) or the trainer's."""

    directory: Path
    tag: str
    arch: str

    @property
    def platform(self) -> str: ...


def run_build(
    ctx: Buildable,
    *,
    client: Any = None,
    nocache: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> BuildResult:
    """Build `ctx` with docker-py and tag it `ctx.tag` only when the build succeeded."""
    client = client or docker_client()
    started = time.monotonic()
    lines: list[str] = []
    image_id: str | None = None
    cached = 0
    total = 0
    with _Progress(ctx.tag, progress) as bar:
        stream: Iterable[dict[str, Any]] = client.api.build(
            fileobj=context_tar(ctx.directory),
            custom_context=True,
            rm=True,
            forcerm=True,
            decode=True,
            network_mode="host",
            nocache=nocache,
            pull=False,
            platform=ctx.platform,
        )
        for event in stream:
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail") or {}
                message = str(event.get("error") or detail.get("message") or event)
                tail = "\n".join(lines[-25:])
                (ctx.directory / "build.log").write_text("\n".join(lines) + "\n" + message)
                raise BuildError(f"building {ctx.tag} failed: {message.strip()}\n{tail}")
            text = event.get("stream")
            if isinstance(text, str):
                for line in text.splitlines():
                    if not line.strip():
                        continue
                    lines.append(line)
                    m = _STEP.match(line)
                    if m:
                        total = int(m.group(2))
                        bar.step(int(m.group(1)), total, m.group(3))
                        log(line)
                    elif "Using cache" in line:
                        cached += 1
            aux = event.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    (ctx.directory / "build.log").write_text("\n".join(lines) + "\n")
    if image_id is None:
        raise BuildError(f"building {ctx.tag} produced no image:\n" + "\n".join(lines[-25:]))
    image = client.images.get(image_id)
    repo, _, tag = ctx.tag.rpartition(":")
    if not image.tag(repo, tag):
        raise BuildError(f"could not tag {image_id} as {ctx.tag}")
    attrs = image.attrs
    return BuildResult(
        image_id=image_id,
        tag=ctx.tag,
        layers=list(attrs["RootFS"]["Layers"]),
        size=int(attrs["Size"]),
        seconds=time.monotonic() - started,
        labels=dict(attrs["Config"].get("Labels") or {}),
        steps_cached=cached,
        steps_total=total,
        platform=f"{attrs.get('Os', 'linux')}/{attrs.get('Architecture', ctx.arch)}",
    )


def build_package(
    package_dir: str | Path,
    *,
    bases: Bases,
    tag: str | None = None,
    context_dir: str | Path | None = None,
    client: Any = None,
    nocache: bool = False,
    pull: bool = False,
    progress: bool = False,
    source: str | None = None,
    revision: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    platform: str = "linux/amd64",
    manifest: Manifest | None = None,
    settings: ImageSettings = DEFAULT_SETTINGS,
) -> BuildResult:
    """Generate the context of a verified package and build it for `platform` (linux/amd64 or
    linux/arm64; a foreign one runs under QEMU user emulation). A bad package is never built.

    `manifest`: the package's, as the caller's `verify.verify_files` returned it (one verification per
    build); None: verified here, before the engine is touched. `settings`: the Debian mirrors of local
    bases built on first use. A base image missing locally is pulled only with `pull=True` (a
    digest-pinned reference is required for that); otherwise the build stops and says how to get it."""
    from model_packages.image.base import HOST_ARCH, arch_for_platform, ensure_bases, require_emulation

    if manifest is None:
        manifest = verify.verify_files(package_dir)  # before touching the engine: a bad package is never built
    arch = arch_for_platform(platform)
    require_emulation(arch)
    client = client or docker_client()
    local = bases == Bases.local()
    arch_bases = bases.for_arch(arch)
    resolved, _ = arch_bases.for_flavor(flavor_for(manifest), arch)
    if local and arch != HOST_ARCH:  # the foreign architecture's bases, built on first use
        ensure_bases(client, arch=arch, log=log, settings=settings)
    if resolved != arch_bases:  # a local base variant with the flavor's system packages, built on first use
        ensure_bases(client, extra=SYSTEM_PACKAGES[flavor_for(manifest)], arch=arch, log=log, settings=settings)
    for ref in sorted({resolved.runtime, resolved.builder}):
        require_image(client, ref, pull, platform)
    if context_dir is not None:
        ctx = generate_context(
            package_dir, context_dir, bases=bases, tag=tag, source=source, revision=revision,
            log=log, arch=arch, manifest=manifest,
        )
        return run_build(ctx, client=client, nocache=nocache, progress=progress, log=log)
    with tempfile.TemporaryDirectory(prefix="kaizen-context-") as tmp:
        ctx = generate_context(
            package_dir, Path(tmp) / "context", bases=bases, tag=tag, source=source,
            revision=revision, log=log, arch=arch, manifest=manifest,
        )
        return run_build(ctx, client=client, nocache=nocache, progress=progress, log=log)


def require_image(client: Any, ref: str, pull: bool, platform: str = "linux/amd64") -> None:
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        image = None
    have = None if image is None else f"{image.attrs.get('Os', 'linux')}/{image.attrs.get('Architecture', '')}"
    if have == platform:
        return
    if have is not None and not (pull and "@sha256:" in ref):
        raise BuildError(
            f"base image {ref} is {have}, not {platform}: use the {platform} bases "
            "(`kaizen build --local-base --platform ...` builds them) or pass --pull"
        )
    if pull and "@sha256:" in ref:
        try:
            client.images.pull(ref, platform=platform)
            return
        except docker.errors.APIError as error:
            raise BuildError(f"base image {ref} could not be pulled: {error}") from None
    how = "pass --pull" if "@sha256:" in ref else "pin it by digest and pass --pull"
    raise BuildError(
        f"base image {ref} is not present locally: {how}, `docker pull` it, or use the local "
        "mmdebstrap bases (`kaizen base`, then `kaizen build --local-base`)"
    )
