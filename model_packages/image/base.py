"""Local base images built from Debian packages with mmdebstrap.

Nothing can be pulled from a registry on an offline machine, so `kaizen base` builds two
Debian bookworm images from the Debian mirror and imports them with `docker import`:

- ``kaizen-base/python:3.11-bookworm-runtime``: python3 (3.11), libstdc++6 and their libraries
  only (extract variant: no Essential set, no perl/dpkg/coreutils), stdlib byte-compiled.
- ``kaizen-base/python:3.11-bookworm-builder``: the same plus python3-venv (pip) and binutils
  (strip), for the builder stages of a model image.

A package whose wheels link a system library (LightGBM: libgomp1) is built on a variant of both
bases with that Debian package added, tagged with its name
(``kaizen-base/python:3.11-bookworm-runtime-libgomp1``, :func:`variant_spec`), built on first use.

Both exist per architecture (:data:`ARCHES`): ``--arch=arm64`` bases for linux/arm64 images are
tagged with an ``-arm64`` suffix and imported with their platform, so a
``docker build --platform linux/arm64`` runs their binaries under QEMU user emulation
(``qemu-user-static`` with binfmt, see :func:`emulation_ready`) on an x86 host.

The root file systems are cached as ``.tar.gz`` under ``~/.cache/kaizen/base/`` (override with
``KAIZEN_CACHE_DIR``) so a later import costs seconds, and the tarballs are reproducible
(``SOURCE_DATE_EPOCH``) for one Debian snapshot.

For real users the default base is an upstream ``python:3.11-slim-bookworm`` pinned by digest
(:data:`DEFAULT_UPSTREAM_BASE`); the base is always a parameter of the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_packages.errors import KaizenError
from model_packages.image.settings import DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, DEFAULT_SETTINGS, ImageSettings

# Default base for real users: upstream python:3.11-slim-bookworm pinned by digest (a tag moves).
# The digest is one published for that tag; it cannot be checked from this offline machine:
# re-pin with `skopeo inspect docker://docker.io/library/python:3.11-slim-bookworm` and pass
# `--base` to use another one.
DEFAULT_UPSTREAM_BASE = (
    "docker.io/library/python:3.11-slim-bookworm"
    "@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91"
)

RUNTIME_BASE = "kaizen-base/python:3.11-bookworm-runtime"
BUILDER_BASE = "kaizen-base/python:3.11-bookworm-builder"

SUITE = "bookworm"
# Debian bookworm's release date; keeps the rootfs tarball reproducible.
BASE_SOURCE_DATE_EPOCH = 1686355200

# The runtime base is "distroless-like": mmdebstrap's extract variant unpacks only python3's
# dependency closure (+ libstdc++6, dash for /bin/sh, base-files, netbase) without the Essential
# set (no perl, dpkg, coreutils...). Extract hooks then write the dpkg status database (so image
# scanners still see every package), the users, and byte-compile the stdlib.
RUNTIME_PACKAGES = ("python3", "libstdc++6", "dash", "base-files", "netbase")
# The builder stage needs a normal system: pip (python3-venv) and strip (binutils).
BUILDER_PACKAGES = ("python3", "libstdc++6", "python3-venv", "binutils")

_EXCLUDES = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
    "/usr/share/linda/*",
)

_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\\n"
    "kaizen:x:10001:10001:kaizen:/nonexistent:/nonexistent\\n"
)
_GROUP = "root:x:0:\\nkaizen:x:10001:\\n"

# Dependencies that come with python3 but serve only stdlib modules a model server never imports
# (dbm, sqlite3, readline, curses, nis) or package management (dpkg, tar...). Their files are
# removed and they are left out of the dpkg status, so the status lists exactly what is there.
RUNTIME_DROP = (
    "libdb5.3", "libsqlite3-0", "libreadline8", "readline-common", "libncursesw6", "libtinfo6",
    "libnsl2", "libtirpc3", "libtirpc-common", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3",
    "libkrb5support0", "libkeyutils1", "libcom-err2", "dpkg", "tar", "mawk", "debianutils",
    "libacl1", "libselinux1", "libpcre2-8-0", "libmd0", "libzstd1",
)

# Extract hooks of the runtime base, run in order on the host with the rootfs as "$1".
_RUNTIME_HOOKS = (
    f'drop=" {" ".join(RUNTIME_DROP)} "; for d in "$1"/var/cache/apt/archives/*.deb; do'
    ' p=$(dpkg-deb -f "$d" Package); case "$drop" in *" $p "*)'
    ' dpkg-deb --fsys-tarfile "$d" | tar -t | while read -r f; do'
    ' if [ -L "$1/$f" ] || [ -f "$1/$f" ]; then rm -f "$1/$f"; fi; done; rm -f "$d";; esac; done',
    # dpkg status from the unpacked .debs, so scanners (trivy, grype) see what is inside.
    'mkdir -p "$1/var/lib/dpkg" && for d in "$1"/var/cache/apt/archives/*.deb; do'
    ' dpkg-deb -f "$d" | awk \'{print} /^Package:/{print "Status: install ok installed"}\';'
    ' echo; done > "$1/var/lib/dpkg/status" && rm -f "$1/var/lib/dpkg/status-old"',
    f'printf "{_PASSWD}" > "$1/etc/passwd" && printf "{_GROUP}" > "$1/etc/group"',
    ': > "$1/etc/resolv.conf" && : > "$1/etc/hostname"',
    # Never used by the runtime: glibc's iconv modules (Python has its own codecs), the stdlib's
    # tests and pydoc topics, docs (but the copyright files), man pages, locales.
    'rm -rf "$1"/usr/lib/x86_64-linux-gnu/gconv "$1"/usr/lib/python3.11/test'
    ' "$1"/usr/lib/python3.11/pydoc_data "$1"/usr/share/man "$1"/usr/share/locale'
    ' "$1"/usr/share/info "$1"/usr/share/lintian',
    'find "$1/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null; true',
    'mkdir -p "$1/tmp" && chmod 1777 "$1/tmp"',
    # Deterministic byte code of the stdlib (the read-only root cannot write it at run time).
    'PYTHONHASHSEED=0 chroot "$1" /usr/bin/python3 -m compileall -q -j 0'
    " --invalidation-mode unchecked-hash /usr/lib/python3.11 >/dev/null",
)


_HOST_TRIPLET = "x86_64-linux-gnu"


class BaseImageError(KaizenError):
    """The base image could not be built or imported."""


#: Debian architecture -> (OCI platform, multiarch triplet). amd64 is the host's.
ARCHES: dict[str, tuple[str, str]] = {
    "amd64": ("linux/amd64", "x86_64-linux-gnu"),
    "arm64": ("linux/arm64", "aarch64-linux-gnu"),
}
HOST_ARCH = "amd64"
_QEMU = {"arm64": "qemu-aarch64"}


def platform_of(arch: str) -> str:
    """`arm64` -> `linux/arm64`: the OCI platform of a supported architecture."""
    if arch not in ARCHES:
        raise BaseImageError(f"unsupported architecture {arch!r}: {', '.join(ARCHES)}")
    return ARCHES[arch][0]


def arch_for_platform(platform: str) -> str:
    """`linux/arm64` (or `arm64`, `linux/arm64/v8`) -> `arm64`; an unsupported one is refused."""
    text = platform.strip().lower()
    parts = text.split("/")
    if len(parts) >= 2 and parts[0] != "linux":
        raise BaseImageError(f"unsupported platform {platform!r}: only linux/amd64 and linux/arm64")
    arch = parts[1] if len(parts) >= 2 else parts[0]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if arch not in ARCHES or (len(parts) == 3 and parts[2] not in ("v8", "")):
        raise BaseImageError(f"unsupported platform {platform!r}: only linux/amd64 and linux/arm64")
    return arch


def emulation_ready(arch: str) -> bool:
    """`arch` binaries can run here: natively, or through binfmt_misc's enabled qemu entry."""
    import platform

    native = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch in (HOST_ARCH, native):
        return True
    entry = Path("/proc/sys/fs/binfmt_misc") / _QEMU[arch]
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def require_emulation(arch: str) -> None:
    if not emulation_ready(arch):
        raise BaseImageError(
            f"cannot run {arch} binaries on this host: install qemu-user-static and binfmt-support "
            f"(scripts/setup.sh) and check /proc/sys/fs/binfmt_misc/{_QEMU.get(arch, arch)}"
        )


@dataclass(frozen=True)
class BaseSpec:
    kind: str  # "runtime" | "builder"
    image: str
    packages: tuple[str, ...]
    variant: str
    arch: str = HOST_ARCH
    mirror: str = DEBIAN_MIRROR  # ImageSettings.debian_mirror
    security_mirror: str = DEBIAN_SECURITY_MIRROR

    @property
    def platform(self) -> str:
        return platform_of(self.arch)

    def cache_key(self) -> str:
        parts = [SUITE, self.mirror, self.security_mirror, self.variant, *self.packages,
                 *mmdebstrap_options(self), "v3"]
        if self.arch != HOST_ARCH:  # the host's keys (and cached bases) stay as they were
            parts.append(f"arch={self.arch}")
        text = "\n".join(parts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


SPECS = {
    "runtime": BaseSpec("runtime", RUNTIME_BASE, RUNTIME_PACKAGES, "extract"),
    "builder": BaseSpec("builder", BUILDER_BASE, BUILDER_PACKAGES, "essential"),
}


def variant_spec(kind: str, extra: tuple[str, ...] = (), arch: str = HOST_ARCH,
                 settings: ImageSettings = DEFAULT_SETTINGS) -> BaseSpec:
    """The base of `kind` with the Debian packages `extra` added (the plain base without), for
    `arch` (another architecture than the host's: an ``-<arch>`` suffix on the tag), from the
    Debian mirrors of `settings`."""
    spec = SPECS[kind]
    added = tuple(sorted(set(extra) - set(spec.packages)))
    image = f"{spec.image}-{'-'.join(added)}" if added else spec.image
    if arch != HOST_ARCH:
        if arch not in ARCHES:
            raise BaseImageError(f"unsupported architecture {arch!r}: {', '.join(ARCHES)}")
        image = f"{image}-{arch}"
    mirrors = (settings.debian_mirror, settings.debian_security_mirror)
    if not added and arch == HOST_ARCH and mirrors == (spec.mirror, spec.security_mirror):
        return spec
    return BaseSpec(kind, image, (*spec.packages, *added), spec.variant, arch, *mirrors)


def cache_dir() -> Path:
    root = os.environ.get("KAIZEN_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "kaizen"
    return base / "base"


def rootfs_path(spec: BaseSpec) -> Path:
    arch = "" if spec.arch == HOST_ARCH else f"{spec.arch}-"
    return cache_dir() / f"bookworm-{arch}{spec.kind}-{spec.cache_key()}.tar.gz"


def mmdebstrap_options(spec: BaseSpec) -> list[str]:
    if spec.variant == "extract":
        triplet = ARCHES[spec.arch][1]
        return [f"--extract-hook={hook.replace(_HOST_TRIPLET, triplet)}" for hook in _RUNTIME_HOOKS]
    opts = [f"--dpkgopt=path-exclude={pattern}" for pattern in _EXCLUDES]
    # Keep the copyright files: licences travel with the image.
    opts.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    opts += [
        # The host's resolver must not leak into images.
        '--customize-hook=: > "$1/etc/resolv.conf"',
        '--customize-hook=: > "$1/etc/hostname"',
        '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*',
        "--customize-hook=echo 'kaizen:x:10001:10001:kaizen:/nonexistent:/usr/sbin/nologin'"
        ' >> "$1/etc/passwd"',
        "--customize-hook=echo 'kaizen:x:10001:' >> \"$1/etc/group\"",
    ]
    return opts


def mmdebstrap_command(spec: BaseSpec, target: Path) -> list[str]:
    """The mmdebstrap command line that builds `spec` into the tarball `target`."""
    return [
        "mmdebstrap",
        f"--variant={spec.variant}",
        *([f"--arch={spec.arch}"] if spec.arch != HOST_ARCH else []),
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--include=" + ",".join(spec.packages),
        '--aptopt=Acquire::Retries "3"',
        *mmdebstrap_options(spec),
        SUITE,
        str(target),
        f"deb {spec.mirror} {SUITE} main",
        f"deb {spec.mirror} {SUITE}-updates main",
        f"deb {spec.security_mirror} {SUITE}-security main",
    ]


def build_rootfs(spec: BaseSpec, *, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Build (or reuse from the cache) the root file system tarball of `spec`."""
    target = rootfs_path(spec)
    if target.exists() and not force:
        log(f"cached rootfs {target}")
        return target
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError("mmdebstrap is not installed: apt-get install -y mmdebstrap")
    require_emulation(spec.arch)  # the hooks run the foreign python3 (chroot) under QEMU
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kaizen-base-") as tmp:
        partial = Path(tmp) / target.name
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(BASE_SOURCE_DATE_EPOCH)}
        log(f"mmdebstrap {spec.kind} base ({', '.join(spec.packages)})")
        proc = subprocess.run(
            mmdebstrap_command(spec, partial),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
            raise BaseImageError(f"mmdebstrap failed for the {spec.kind} base:\n{tail}")
        shutil.move(str(partial), target)
    return target


def import_changes(spec: BaseSpec) -> list[str]:
    return [
        f"LABEL io.kaizen.base-key={spec.cache_key()} io.kaizen.base-kind={spec.kind}",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["/usr/bin/python3"]',
    ]


def image_current(client: object, spec: BaseSpec) -> bool:
    """The image exists and was imported from the rootfs this spec describes."""
    import docker.errors

    try:
        image = client.images.get(spec.image)  # type: ignore[attr-defined]
    except docker.errors.ImageNotFound:
        return False
    labels = image.attrs.get("Config", {}).get("Labels") or {}
    return labels.get("io.kaizen.base-key") == spec.cache_key() and image.attrs.get("Architecture") == spec.arch


def _config(spec: BaseSpec, diff_id: str) -> dict[str, Any]:
    """The image configuration `import_changes` gives an imported base, for `spec.arch`."""
    return {
        "architecture": spec.arch,
        "os": "linux",
        "created": datetime.fromtimestamp(BASE_SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
            "Cmd": ["/usr/bin/python3"],
            "Labels": {"io.kaizen.base-key": spec.cache_key(), "io.kaizen.base-kind": spec.kind},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"kaizen base (mmdebstrap --arch={spec.arch})"}],
    }


def load_foreign(client: object, spec: BaseSpec, tarball: Path) -> None:
    """`docker load` the rootfs tarball as a one-layer image of `spec.arch`."""
    import gzip
    import io
    import tarfile

    h = hashlib.sha256()
    with gzip.open(tarball, "rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            h.update(chunk)
    config = json.dumps(_config(spec, f"sha256:{h.hexdigest()}"), sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [spec.image],
                            "Layers": ["rootfs/layer.tar.gz"]}]).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(str(tarball), arcname="rootfs/layer.tar.gz")
    client.images.load(archive.getvalue())  # type: ignore[attr-defined]


def import_base(client: object, spec: BaseSpec, tarball: Path) -> str:
    """`docker import` the tarball as `spec.image` (with its platform); returns the image id."""
    repo, tag = spec.image.rsplit(":", 1)
    if spec.arch == HOST_ARCH:
        client.api.import_image_from_file(  # type: ignore[attr-defined]
            str(tarball), repository=repo, tag=tag, changes=import_changes(spec)
        )
    else:
        # `docker import --platform` of engine 20.10 keeps only the OS (the architecture becomes the
        # host's), so a foreign base is `docker load`ed from an image archive whose config says it.
        load_foreign(client, spec, tarball)
        arch = client.images.get(spec.image).attrs.get("Architecture")  # type: ignore[attr-defined]
        if arch != spec.arch:
            raise BaseImageError(f"docker load of {spec.image} gave architecture {arch!r}, not {spec.arch}")
    image = client.images.get(spec.image)  # type: ignore[attr-defined]
    return str(image.id)


def ensure_bases(
    client: object | None = None,
    *,
    kinds: tuple[str, ...] = ("runtime", "builder"),
    force: bool = False,
    log: Callable[[str], None] = print,
    extra: tuple[str, ...] = (),
    arch: str = HOST_ARCH,
    settings: ImageSettings = DEFAULT_SETTINGS,
) -> dict[str, str]:
    """Make sure the local base images exist (with the Debian packages `extra` added, see
    :func:`variant_spec`) for `arch`, built from the Debian mirrors of `settings` when missing;
    returns {kind: image reference}."""
    if client is None:
        import docker

        client = docker.from_env()
    out: dict[str, str] = {}
    for kind in kinds:
        spec = variant_spec(kind, extra, arch, settings)
        if not force and image_current(client, spec):
            out[kind] = spec.image
            continue
        tarball = build_rootfs(spec, force=force, log=log)
        log(f"docker import {tarball.name} -> {spec.image}")
        import_base(client, spec, tarball)
        out[kind] = spec.image
    return out
