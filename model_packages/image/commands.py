"""`kaizen base`, `kaizen build`, `kaizen push`: registered on the main typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model_packages.errors import KaizenError

err = Console(stderr=True)
out = Console()


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def base_command(
    kind: Annotated[
        str, typer.Option(help="runtime, builder or all", show_default=True)
    ] = "all",
    force: Annotated[bool, typer.Option("--force", help="rebuild the root file systems")] = False,
    arch: Annotated[
        str, typer.Option(help="amd64 or arm64 (arm64: mmdebstrap --arch=arm64 under QEMU)")
    ] = "amd64",
) -> None:
    """Build the local Debian base images with mmdebstrap (cached under ~/.cache/kaizen/base)."""
    from model_packages.image import base
    from model_packages.image.build import docker_client
    from model_packages.image.settings import ImageSettings

    kinds = ("runtime", "builder") if kind == "all" else (kind,)
    if any(k not in base.SPECS for k in kinds):
        raise _fail(ValueError(f"unknown base kind {kind!r}: runtime, builder or all"))
    try:
        arch = base.arch_for_platform(arch)
        with err.status(f"building {arch} base images (mmdebstrap, docker import)"):
            images = base.ensure_bases(
                docker_client(), kinds=kinds, force=force, log=lambda m: err.print(m), arch=arch,
                settings=ImageSettings.from_env(),
            )
    except KaizenError as error:
        raise _fail(error) from None
    for k, ref in images.items():
        out.print(f"{k}: {ref}")


def build_command(
    package: Annotated[Path, typer.Argument(help="model package directory")],
    base: Annotated[
        str | None,
        typer.Option(help="runtime base image (default: upstream python:3.11-slim by digest)"),
    ] = None,
    builder_base: Annotated[
        str | None, typer.Option(help="builder base image (default: same Python as --base)")
    ] = None,
    local_base: Annotated[
        bool, typer.Option("--local-base", help="use the local mmdebstrap bases (built when missing)")
    ] = False,
    tag: Annotated[str | None, typer.Option(help="image tag (default kaizen/NAME:VERSION)")] = None,
    context_dir: Annotated[
        Path | None, typer.Option(help="write the build context here and keep it")
    ] = None,
    context_only: Annotated[
        bool, typer.Option("--context-only", help="only generate the build context (for a cloud build service)")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not use the build cache")] = False,
    pull: Annotated[
        bool, typer.Option("--pull", help="pull a missing digest-pinned base image from its registry")
    ] = False,
    source: Annotated[str | None, typer.Option(help="org.opencontainers.image.source")] = None,
    revision: Annotated[
        str | None, typer.Option(help="org.opencontainers.image.revision")
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option(help="linux/amd64, linux/arm64 or both (comma-separated): one image per "
                     "platform, tagged TAG-<arch> (push them with `kaizen push --platform`)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Build the image of a model package: kaizen/NAME:VERSION (per platform: -<arch> tags)."""
    from model_packages import verify
    from model_packages.image import base as base_mod
    from model_packages.image.build import build_package, docker_client
    from model_packages.image.context import Bases, default_tag, generate_context
    from model_packages.image.multiarch import parse_platforms, platform_tag
    from model_packages.image.settings import ImageSettings

    try:
        settings = ImageSettings.from_env()
        source = source or settings.image_source
        manifest = verify.verify_files(package)  # once per build: a package that fails validation is never built
        if local_base:
            bases = Bases(base or base_mod.RUNTIME_BASE, builder_base or base_mod.BUILDER_BASE)
        else:
            bases = Bases.choose(base, builder_base, settings)
        platforms = parse_platforms(platform) if platform else [None]
        if context_only:
            target = context_dir or Path("build") / "kaizen-context"
            for p in platforms:  # one context per platform (its bases, lock and wheels)
                ctx = generate_context(
                    package, target if len(platforms) == 1 else target / str(p).replace("/", "-"),
                    bases=bases, tag=tag, source=source, revision=revision,
                    log=lambda m: err.print(m), arch=base_mod.arch_for_platform(p) if p else base_mod.HOST_ARCH,
                    manifest=manifest,
                )
                out.print(f"build context for {ctx.tag} ({ctx.platform}) in {ctx.directory}")
            return
        client = docker_client()
        if local_base:
            for p in platforms:
                arch = base_mod.arch_for_platform(p) if p else base_mod.HOST_ARCH
                base_mod.ensure_bases(client, arch=arch, log=lambda m: err.print(m), settings=settings)
        results = []
        for p in platforms:
            tag_p = tag if p is None else platform_tag(tag or default_tag(manifest), p)
            results.append(build_package(
                package,
                bases=bases,
                tag=tag_p,
                context_dir=context_dir if p is None else (context_dir / p.replace("/", "-") if context_dir else None),
                client=client,
                nocache=no_cache,
                pull=pull,
                progress=not as_json and err.is_terminal,
                source=source,
                revision=revision,
                log=lambda m: None if err.is_terminal or as_json else err.print(m, highlight=False),
                platform=p or "linux/amd64",
                manifest=manifest,
                settings=settings,
            ))
    except KaizenError as error:
        raise _fail(error) from None
    for result in results:
        if as_json:
            print(json.dumps(result.__dict__, indent=2))
        else:
            out.print(
                f"built {result.tag} ({result.platform}, {result.image_id[:19]}, "
                f"{result.size / 1e6:.1f} MB, {result.seconds:.1f} s)"
            )


def build_trainer_command(
    pipeline: Annotated[Path, typer.Argument(help="pipeline file (`pipeline = Pipeline(...)`)")],
    base: Annotated[str | None, typer.Option(help="runtime base image (default: upstream python:3.11-slim)")] = None,
    builder_base: Annotated[str | None, typer.Option(help="builder base image (default: same as --base)")] = None,
    local_base: Annotated[
        bool, typer.Option("--local-base", help="use the local mmdebstrap bases (built when missing)")
    ] = False,
    tag: Annotated[str | None, typer.Option(help="image tag (default kaizen/NAME-trainer:<pipeline sha>)")] = None,
    context_dir: Annotated[Path | None, typer.Option(help="write the build context here and keep it")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not use the build cache")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Build the trainer image: `kaizen retrain` with PIPELINE and the locked dependencies (non-root)."""
    from model_packages.image import base as base_mod
    from model_packages.image.build import docker_client
    from model_packages.image.context import Bases
    from model_packages.image.settings import ImageSettings
    from model_packages.image.trainer import build_trainer

    try:
        settings = ImageSettings.from_env()
        if local_base:
            bases = Bases(base or base_mod.RUNTIME_BASE, builder_base or base_mod.BUILDER_BASE)
        else:
            bases = Bases.choose(base, builder_base, settings)
        client = docker_client()
        if local_base:
            base_mod.ensure_bases(client, log=lambda m: err.print(m), settings=settings)
        result = build_trainer(pipeline, bases=bases, tag=tag, client=client, nocache=no_cache,
                               context_dir=context_dir, log=lambda m: err.print(m, highlight=False))
    except KaizenError as error:
        raise _fail(error) from None
    if as_json:
        print(json.dumps(result.__dict__, indent=2))
    else:
        out.print(f"built {result.tag} ({result.image_id[:19]}, {result.size / 1e6:.1f} MB, {result.seconds:.1f} s)")


def push_command(
    image: Annotated[str, typer.Argument(help="local image, e.g. kaizen/NAME:VERSION")],
    registry: Annotated[
        str, typer.Option(help="registry host[:port], e.g. 127.0.0.1:5000 or an ECR host")
    ],
    records: Annotated[
        Path | None,
        typer.Option(help="image records file (default ./kaizen-images.json, $KAIZEN_IMAGES_FILE)"),
    ] = None,
    retries: Annotated[int, typer.Option(help="retries of transient errors")] = 4,
    backoff: Annotated[float, typer.Option(help="first retry delay in seconds (doubles)")] = 1.0,
    platform: Annotated[
        str | None,
        typer.Option(help="push the IMAGE-<arch> images of these platforms and an OCI image "
                     "index over them (its digest is printed)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Push an image and print its digest-pinned reference REGISTRY/kaizen/NAME@sha256:..."""
    from model_packages.image import records as records_mod
    from model_packages.image.multiarch import parse_platforms, push_index
    from model_packages.image.registry import push_image

    result: object
    try:
        with err.status(f"pushing {image} to {registry}"):
            if platform:
                result = push_index(
                    image, parse_platforms(platform), registry,
                    records_path=records_mod.records_path(records), retries=retries,
                    backoff=backoff, log=lambda m: err.print(m, highlight=False),
                )
            else:
                result = push_image(
                    image,
                    registry,
                    records_path=records_mod.records_path(records),
                    retries=retries,
                    backoff=backoff,
                    log=lambda m: err.print(m, highlight=False),
                )
    except KaizenError as error:
        raise _fail(error) from None
    if as_json:
        record = getattr(result, "record", None)
        print(json.dumps({**result.__dict__, "record": record.to_json() if record else None}, indent=2))
    else:
        print(result.reference)  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    """Add the image commands to the `kaizen` app."""
    app.command("base")(base_command)
    app.command("build")(build_command)
    app.command("build-trainer")(build_trainer_command)
    app.command("push")(push_command)
