"""Build context generation: model package -> deterministic Docker build context.

This module only writes files; it never talks to a Docker engine. The resulting directory (or
its deterministic tar stream, :func:`context_tar`) can be built by docker-py
(:mod:`model_packages.image.build`) or handed to a cloud build service.

Context layout::

    Dockerfile
    requirements.lock      the image lock (hashed), see locks/
    build/trim_venv.py     trims the venv in the builder stage
    wheels/*.whl           the locked wheels (from the offline wheel cache)
    runtime/opt/kaizen/lib/model_packages/...  only the runtime (RUNTIME_FILES: what the
                                               entry points import; no CLI, no image code)
    model/opt/kaizen/model/<files>             the model package (kaizen.yaml + artifacts)

`runtime/` and `model/` mirror the image's file system and are copied to "/" so that every
directory of a layer, parents included, carries the fixed timestamp.

Every entry of the tar stream has mtime SOURCE_DATE_EPOCH, uid/gid 0, normalised modes and a
sorted order, so the same package + base + lock gives the same layers.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import model_packages
from model_packages import verify
from model_packages.errors import KaizenError, PackageError
from model_packages.image import locks
from model_packages.image.base import BUILDER_BASE, DEFAULT_UPSTREAM_BASE, RUNTIME_BASE, platform_of
from model_packages.image.refs import image_repository, tag_for
from model_packages.image.settings import DEFAULT_SETTINGS, ImageSettings
from model_packages.manifest import Manifest
from model_packages.shell import run_quiet

# 2023-11-14T22:13:20Z: fixed timestamp of every file in the context and in the image layers.
SOURCE_DATE_EPOCH = 1700000000
USER_ID = 10001
VENV = "/opt/venv"
RUNTIME_LIB = "/opt/kaizen/lib"
MODEL_DIR = "/opt/kaizen/model"
ENTRYPOINT = (f"{VENV}/bin/python", "-m", "model_packages.serving")
LABEL_PREFIX = "io.kaizen"

# What an image runs: `python -m` of these (the ENTRYPOINT, `serve`, `batch` and `batch-blob` through
# serving/launch.py; the edge runtime with `--entrypoint /opt/venv/bin/python IMAGE -m model_packages.edge`).
IMAGE_ENTRYPOINTS = ("model_packages.serving", "model_packages.edge")
# The runtime that goes into images, an allow-list: exactly the files of `model_packages` the entry
# points import (tests/image/test_runtime_allowlist.py walks their imports and fails on a module
# missing here, one listed but not imported, or a third-party import the image locks lack).
RUNTIME_FILES = (
    "__init__.py", "py.typed", "errors.py", "manifest.py", "verify.py", "onnx_check.py", "loading.py",
    "skops_trust.py", "baseline.py", "azure_blob.py",
    "serving/__init__.py", "serving/__main__.py", "serving/launch.py", "serving/settings.py",
    "serving/contract.py", "serving/workers.py", "serving/server.py", "serving/app.py", "serving/runtime.py",
    "serving/runner.py", "serving/schema.py", "serving/codecs.py", "serving/tensors.py", "serving/openapi.py",
    "serving/metrics.py", "serving/logs.py", "serving/capture.py", "serving/drift.py",
    "serving/messages.py", "serving/routes.py", "serving/router.py",
    "serving/contracts/__init__.py", "serving/contracts/common.py", "serving/contracts/sagemaker.py",
    "serving/contracts/vertex.py", "serving/contracts/kserve_v1.py", "serving/contracts/v2.py",
    "drift/__init__.py", "drift/calibration.py", "drift/counters.py", "drift/state.py", "drift/stats.py",
    "batch/__init__.py", "batch/entry.py", "batch/blob_entry.py", "batch/job.py", "batch/readers.py",
    "batch/resume.py", "batch/s3.py",
    "edge/__init__.py", "edge/__main__.py", "edge/runtime.py",
)

TEMPLATE = Path(__file__).with_name("Dockerfile.tmpl")
SITE_PACKAGES = f"{VENV}/lib/python3.11/site-packages"

# Per-flavor parts of the locked wheels that serving never loads, removed in the builder stage.
# onnxruntime: the C API library (the Python extension is self-contained: its ELF NEEDED list
# has only libc/libstdc++), and the offline tool subpackages.
FLAVOR_TRIM: dict[str, tuple[str, ...]] = {
    "sklearn": (),
    "onnx": (
        "onnxruntime/capi/libonnxruntime.so*",
        "onnxruntime/transformers",
        "onnxruntime/quantization",
        "onnxruntime/tools",
        "onnxruntime/datasets",
        "onnxruntime/backend",
    ),
}
_COMMON_SMOKE = ("numpy", "pydantic", "yaml", "httptools", "uvloop", "prometheus_client")
# Imported in the builder stage after trimming: a trim that broke an import fails the build.
FLAVOR_SMOKE: dict[str, tuple[str, ...]] = {
    "sklearn": (*_COMMON_SMOKE, "scipy.sparse", "sklearn", "sklearn.ensemble", "skops.io", "pandas"),
    "onnx": (*_COMMON_SMOKE, "onnxruntime"),
    "xgboost": (*_COMMON_SMOKE, "xgboost"),
    "lightgbm": (*_COMMON_SMOKE, "lightgbm"),
}


#: Debian packages a flavor's wheels need at run time: the LightGBM wheel links the system
#: OpenMP library (the XGBoost and scikit-learn wheels bundle their own). Only images of that
#: flavor get them.
SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {"lightgbm": ("libgomp1",)}


class ContextError(KaizenError):
    """The build context could not be generated."""


@dataclass(frozen=True)
class Bases:
    """The runtime base and the builder base (must hold the same Python at the same path)."""

    runtime: str
    builder: str

    @classmethod
    def local(cls, arch: str = "amd64") -> Bases:
        """The local mmdebstrap bases of `arch` (see :func:`model_packages.image.base.variant_spec`)."""
        if arch == "amd64":
            return cls(RUNTIME_BASE, BUILDER_BASE)
        from model_packages.image.base import variant_spec

        return cls(variant_spec("runtime", (), arch).image, variant_spec("builder", (), arch).image)

    def for_arch(self, arch: str) -> Bases:
        """These bases for `arch`: the local bases have one image per architecture; any other base
        is taken as a multi-platform reference (the engine picks the platform's image)."""
        return Bases.local(arch) if self == Bases.local() else self

    @classmethod
    def upstream(cls, image: str = DEFAULT_UPSTREAM_BASE) -> Bases:
        return cls(image, image)

    def for_flavor(self, flavor: str, arch: str = "amd64") -> tuple[Bases, tuple[str, ...]]:
        """The bases to build a `flavor` image on, and the Debian packages the Dockerfile must
        still install. The local bases have a variant with the packages built in (mmdebstrap,
        reproducible, no package manager in the image); any other base (the upstream default)
        installs them with apt-get in the builder and runtime stages."""
        needed = SYSTEM_PACKAGES.get(flavor, ())
        if not needed:
            return self, ()
        if self in (Bases.local(), Bases.local(arch)):
            from model_packages.image.base import variant_spec

            return Bases(variant_spec("runtime", needed, arch).image,
                         variant_spec("builder", needed, arch).image), ()
        return self, needed

    @classmethod
    def choose(cls, base: str | None, builder: str | None, settings: ImageSettings = DEFAULT_SETTINGS) -> Bases:
        """`base` None -> the settings' base image (KAIZEN_BASE_IMAGE), else the upstream digest-pinned
        default; `builder` None -> the settings' builder image, else the runtime's (the local builder
        base for the local runtime base)."""
        runtime = base or settings.base_image or DEFAULT_UPSTREAM_BASE
        builder = builder or settings.builder_image or (BUILDER_BASE if runtime == RUNTIME_BASE else runtime)
        return cls(runtime, builder)


class ContextFiles:
    """A generated build context for one architecture: the platform it builds for, its Dockerfile.
    Shared by the model image's context (BuildContext) and the trainer's (trainer.TrainerContext)."""

    directory: Path
    arch: str

    @property
    def platform(self) -> str:
        return platform_of(self.arch)

    @property
    def dockerfile(self) -> Path:
        return self.directory / "Dockerfile"


@dataclass
class BuildContext(ContextFiles):
    directory: Path
    manifest: Manifest
    flavor: str
    bases: Bases
    tag: str
    labels: dict[str, str] = field(default_factory=dict)
    arch: str = "amd64"


def default_tag(manifest: Manifest) -> str:
    return f"{image_repository(manifest.name)}:{tag_for(manifest.version)}"


def flavor_for(manifest: Manifest) -> str:
    """ONNX packages and packages with a compiled ONNX serving artifact need only onnxruntime;
    the others need their framework (scikit-learn, XGBoost or LightGBM)."""
    if manifest.framework == "onnx" or manifest.serving is not None:
        return "onnx"
    return manifest.framework


def public_url(url: str | None) -> str:
    """A repository URL without credentials: no user or password, query or fragment (CI checkouts
    embed tokens, e.g. `https://ci-user:glpat-…@gitlab…`, and labels end up in pushed images)."""
    if not url:
        return "unknown"
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{host}:{port}" if port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    # scp-like `user@host:path`: drop the user.
    return url.rsplit("@", 1)[-1] if "@" in url.split(":", 1)[0] else url


def oci_labels(
    manifest: Manifest,
    *,
    flavor: str,
    lock_sha256: str,
    source: str | None,
    revision: str | None,
    created: datetime | None = None,
) -> dict[str, str]:
    here = Path(model_packages.__file__).parent
    created = created or _created(manifest)
    return {
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.description": manifest.description or manifest.name,
        "org.opencontainers.image.version": manifest.version,
        "org.opencontainers.image.created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.source": public_url(
            source or run_quiet(["git", "remote", "get-url", "origin"], cwd=here)
        ),
        "org.opencontainers.image.revision": revision
        or manifest.lineage.code_revision
        or run_quiet(["git", "rev-parse", "HEAD"], cwd=here)
        or "unknown",
        "org.opencontainers.image.licenses": "Apache-2.0",
        f"{LABEL_PREFIX}.model.name": manifest.name,
        f"{LABEL_PREFIX}.model.version": manifest.version,
        f"{LABEL_PREFIX}.model.framework": manifest.framework,
        f"{LABEL_PREFIX}.model.artifact-sha256": manifest.artifact_sha256,
        f"{LABEL_PREFIX}.lock": flavor,
        f"{LABEL_PREFIX}.lock-sha256": lock_sha256,
        f"{LABEL_PREFIX}.runtime-version": model_packages.__version__,
    }


def _created(manifest: Manifest) -> datetime:
    """SOURCE_DATE_EPOCH when set, else the package's creation time: never the wall clock, so
    the same package + base + lock gives the same image configuration too."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    created = manifest.lineage.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.astimezone(UTC)


def label_lines(labels: dict[str, str]) -> str:
    """The arguments of a Dockerfile LABEL instruction, one label a line, sorted."""
    return " \\\n      ".join(f"{k}={dockerfile_quote(v)}" for k, v in sorted(labels.items()))


def dockerfile_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _apt_install(packages: tuple[str, ...]) -> str:
    """A RUN line installing Debian packages in an upstream (Debian-based) image, lists removed."""
    if not packages:
        return ""
    return ("RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends "
            f"{' '.join(packages)} >/dev/null && rm -rf /var/lib/apt/lists/*\n")


def render_dockerfile(bases: Bases, labels: dict[str, str], flavor: str = "sklearn",
                      system_packages: tuple[str, ...] = ()) -> str:
    """The Dockerfile; `system_packages` are installed with apt-get in the builder stage (for the
    smoke imports) and in the image (see `Bases.for_flavor`)."""
    text = TEMPLATE.read_text()
    for key, value in {
        "BUILDER_BASE": bases.builder,
        "RUNTIME_BASE": bases.runtime,
        "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH),
        "VENV": VENV,
        "RUNTIME_LIB": RUNTIME_LIB,
        "MODEL_DIR": MODEL_DIR,
        "USER_ID": str(USER_ID),
        "LABELS": label_lines(labels),
        "ENTRYPOINT": "[" + ", ".join(dockerfile_quote(p) for p in ENTRYPOINT) + "]",
        "TRIM": " ".join(f"'{g}'" for g in FLAVOR_TRIM.get(flavor, ())),
        "SMOKE": " ".join(FLAVOR_SMOKE.get(flavor, ())),
        "SYSTEM_PACKAGES": _apt_install(system_packages),
    }.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ContextError("Dockerfile template has an unfilled placeholder")
    return text


def runtime_files(root: Path) -> Iterator[Path]:
    """The files of the `model_packages` tree at `root` that go into images (:data:`RUNTIME_FILES`)."""
    for name in sorted(RUNTIME_FILES):
        path = root / name
        if not path.is_file():
            raise ContextError(f"{path} is in the image runtime (context.RUNTIME_FILES) but does not exist")
        yield path


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def generate_context(
    package_dir: str | Path,
    out_dir: str | Path,
    *,
    bases: Bases,
    tag: str | None = None,
    source: str | None = None,
    revision: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    arch: str = "amd64",
    manifest: Manifest | None = None,
) -> BuildContext:
    """Write a complete build context of a verified package into `out_dir` for the image
    architecture `arch` (its bases, its lock and wheels).

    `manifest` is the package's, as the caller's `verify.verify_files` returned it (a build verifies
    once); without it the package is verified here. A package that fails validation raises
    PackageError before anything is written.
    """
    package = Path(package_dir)
    if manifest is None:
        manifest = verify.verify_files(package)  # raises PackageError: never build a bad package
    flavor = flavor_for(manifest)
    bases, system_packages = bases.for_arch(arch).for_flavor(flavor, arch)
    lock_file = locks.lock_path(flavor, arch)
    pins = locks.read_lock(lock_file)
    wheels = locks.ensure_wheels(pins, log=log, arch=arch)

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # Locked wheels and lock.
    for whl in wheels:
        link_or_copy(whl, out / "wheels" / whl.name)
    shutil.copyfile(lock_file, out / "requirements.lock")
    (out / "build").mkdir()
    shutil.copyfile(Path(__file__).with_name("trim_venv.py"), out / "build" / "trim_venv.py")
    # Runtime code: only what the serving runtime needs.
    src_root = Path(model_packages.__file__).parent
    for path in runtime_files(src_root):
        dst = out / "runtime" / RUNTIME_LIB.lstrip("/") / "model_packages" / path.relative_to(
            src_root
        )
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
    # The model package: manifest, artifact and compiled serving artifact only.
    model_out = out / "model" / MODEL_DIR.lstrip("/")
    model_out.mkdir(parents=True)
    files = {"kaizen.yaml", manifest.artifact}
    if manifest.serving is not None:
        files.add(manifest.serving.artifact)
    for name in sorted(files):
        src = package / name
        if not src.is_file():
            raise PackageError(f"{src} is missing")
        link_or_copy(src, model_out / name)

    labels = oci_labels(
        manifest,
        flavor=flavor,
        lock_sha256=verify.sha256_file(lock_file),
        source=source,
        revision=revision,
    )
    (out / "Dockerfile").write_text(render_dockerfile(bases, labels, flavor, system_packages))
    (out / ".dockerignore").write_text("")
    return BuildContext(
        directory=out,
        manifest=manifest,
        flavor=flavor,
        bases=bases,
        tag=tag or default_tag(manifest),
        labels=labels,
        arch=arch,
    )


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = SOURCE_DATE_EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir():
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    info.pax_headers = {}
    return info


def write_context_tar(directory: Path, fileobj: IO[bytes]) -> None:
    """Write `directory` as a deterministic (sorted, fixed metadata) uncompressed tar."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = sorted(directory.rglob("*"), key=lambda p: p.relative_to(directory).as_posix())
        for path in entries:
            rel = path.relative_to(directory).as_posix()
            info = _normalise(tar.gettarinfo(str(path), arcname=rel))
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


def context_tar(directory: Path) -> io.BytesIO:
    buf = io.BytesIO()
    write_context_tar(directory, buf)
    buf.seek(0)
    return buf
