"""Lock files for the dependencies inside model images, and the offline wheel cache.

A lock (``locks/<flavor>.txt``) pins every distribution the serving runtime needs inside an
image, for CPython 3.11 on manylinux x86_64, each with its ``--hash=sha256:…``; the locks of
linux/arm64 images (manylinux aarch64 wheels, same versions) are ``locks/arm64/<flavor>.txt``. The builder stage
installs it with ``pip install --no-index --require-hashes``, so an image build never reaches an
index.

The wheel cache (``~/.cache/kaizen/wheels``, or ``KAIZEN_CACHE_DIR``) holds the locked wheels;
``ensure_wheels`` fills it once with ``pip download`` (the only step that needs PyPI) and
checks every hash; build contexts then copy wheels from it.

Regenerate the locks (needs PyPI)::

    python -m model_packages.image.locks [--arch arm64] [FLAVOR...]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from model_packages.errors import KaizenError
from model_packages.verify import sha256_file

LOCK_DIR = Path(__file__).parent / "locks"

PYTHON_VERSION = "3.11"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: The wheel platform tags of each image architecture (Debian bookworm: glibc 2.36).
ARCH_PLATFORMS: dict[str, tuple[str, ...]] = {
    "amd64": PLATFORMS,
    "arm64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
HOST_ARCH = "amd64"
ABI = "cp311"

# What the serving runtime imports. The runtime imports framework code lazily, so a flavor
# only adds its own framework. No CLI/build tooling (typer, rich, docker, boto3) in images.
COMMON = (
    "numpy==2.4.6",
    "pydantic==2.14.4",
    "pyyaml==6.0.4",
    "httptools==0.9.0",
    "uvloop==0.23.0",
    "prometheus-client==0.26.0",
)
FLAVORS: dict[str, tuple[str, ...]] = {
    # pandas: DataFrame-fitted models are given a DataFrame (loading.frame_builder).
    "sklearn": (*COMMON, "scikit-learn==1.9.1", "scipy==1.17.1", "skops==0.16.0", "pandas==3.1.1"),
    "onnx": (*COMMON, "onnxruntime==1.32.0"),
    # xgboost-cpu: the CPU-only wheel (the `xgboost` wheel bundles CUDA, ~300 MB); same module.
    "xgboost": (*COMMON, "xgboost-cpu==3.2.0", "scipy==1.17.1"),
    "lightgbm": (*COMMON, "lightgbm==4.7.0", "scipy==1.17.1"),
    # The trainer image (`kaizen build --trainer`): `kaizen retrain` with scikit-learn, the step
    # store (Parquet), skl2onnx + onnxruntime (compile and check the serving artifact), the
    # signed audit trail (cryptography) and the CLI (typer, rich). Not a serving image.
    "trainer": (*COMMON, "scikit-learn==1.9.1", "scipy==1.17.1", "skops==0.16.0", "pandas==3.1.1",
                "pyarrow==26.0.1", "onnxruntime==1.32.0", "onnx==1.22.0", "skl2onnx==1.20.0",
                "typer==0.29.2", "rich==15.0.0", "cryptography==50.0.2"),
}
# Dependencies of the above that the runtime never imports (skops.card only...), left out of the
# image; the builder installs the lock with --no-deps, so the lock is exactly what is installed.
EXCLUDE: dict[str, frozenset[str]] = {
    "sklearn": frozenset({"prettytable", "wcwidth"}),
    # protobuf/flatbuffers/packaging: only onnxruntime's tools/quantization/transformers/backend
    # use them, and
    # those subpackages are not in images either (see context.FLAVOR_TRIM).
    "onnx": frozenset({"protobuf", "flatbuffers", "packaging"}),
}
# Which lock a model package needs: context.flavor_for (from its manifest).

_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class LockError(KaizenError):
    """A lock file is missing or inconsistent, or its wheels cannot be had."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]

    @property
    def key(self) -> str:
        return normalize(self.name)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(flavor: str, arch: str = HOST_ARCH) -> Path:
    """Where the lock of `flavor` for `arch` lives (it may not exist)."""
    if arch not in ARCH_PLATFORMS:
        raise LockError(f"no wheels for architecture {arch!r}: {', '.join(ARCH_PLATFORMS)}")
    return LOCK_DIR / f"{flavor}.txt" if arch == HOST_ARCH else LOCK_DIR / arch / f"{flavor}.txt"


def lock_path(flavor: str, arch: str = HOST_ARCH) -> Path:
    path = lock_file(flavor, arch)
    if not path.exists():
        which = f"flavor {flavor!r}" if arch == HOST_ARCH else f"flavor {flavor!r} on {arch}"
        raise LockError(
            f"no lock file for {which} ({path}); `python -m model_packages.image.locks "
            f"--arch {arch} {flavor}` writes it when its wheels exist"
        )
    return path


def read_lock(path: Path) -> list[Pin]:
    """Parse a hashed requirements file written by :func:`write_lock` (or pip-compile)."""
    text = path.read_text().replace("\\\n", " ")
    pins: list[Pin] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        line = line.split(" #", 1)[0]
        if not line:
            continue
        m = _LINE.match(line)
        if not m:
            raise LockError(f"{path}: cannot parse {raw.strip()!r}")
        hashes = tuple(_HASH.findall(line))
        if not hashes:
            raise LockError(f"{path}: {m.group(1)} has no --hash")
        pins.append(Pin(m.group(1), m.group(2), hashes))
    return pins


def _wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-")
    return parts[0], parts[1]


def _platform_args(arch: str = HOST_ARCH) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    args += ["--abi", ABI, "--abi", "abi3", "--abi", "none"]
    for plat in ARCH_PLATFORMS[arch]:
        args += ["--platform", plat]
    args += ["--platform", "any"]
    return args


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def _clean_env() -> dict[str, str]:
    # The host's pip may carry local find-links or constraints that images never see.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def compile_lock(flavor: str, out: Path | None = None, arch: str = HOST_ARCH) -> Path:
    """Resolve `flavor`'s requirements for cp311 manylinux on `arch` and write a hashed lock."""
    reqs = FLAVORS[flavor]
    out = out or lock_file(flavor, arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = "x86_64" if arch == HOST_ARCH else "aarch64"
    with tempfile.TemporaryDirectory(prefix="kaizen-lock-") as tmp:
        cmd = [*_pip(), "download", "--isolated", "-q", "-d", tmp, *_platform_args(arch), *reqs]
        host_lock = lock_file(flavor, HOST_ARCH)
        if arch != HOST_ARCH and host_lock.exists():
            # The same versions as the host's lock: one model version, one set of libraries.
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text("".join(f"{p.name}=={p.version}\n" for p in read_lock(host_lock)))
            cmd += ["-c", str(constraints)]
        cert = os.environ.get("PIP_CERT")
        if cert:
            cmd[4:4] = ["--cert", cert]
        proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LockError(f"pip download failed for {flavor} on {arch}:\n{proc.stderr[-2000:]}")
        wheels = sorted(Path(tmp).glob("*.whl"), key=lambda p: normalize(p.name))
        excluded = EXCLUDE.get(flavor, frozenset())
        wheels = [w for w in wheels if normalize(_wheel_name_version(w.name)[0]) not in excluded]
        lines = [
            f"# Kaizen image lock: {flavor} (CPython {PYTHON_VERSION}, manylinux {machine}).",
            "# Generated by `python -m model_packages.image.locks"
            + ("" if arch == HOST_ARCH else f" --arch {arch}") + "`; do not edit by hand.",
            "# Top-level: " + ", ".join(reqs),
        ]
        if excluded:
            lines.append("# Left out (never imported by the runtime): " + ", ".join(sorted(excluded)))
        for whl in wheels:
            name, version = _wheel_name_version(whl.name)
            lines.append(f"{normalize(name)}=={version} \\")
            lines.append(f"    --hash=sha256:{sha256_file(whl)}")
        out.write_text("\n".join(lines) + "\n")
        cache = wheel_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        for whl in wheels:
            if not (cache / whl.name).exists():
                shutil.copy2(whl, cache / whl.name)
    return out


def wheel_cache_dir() -> Path:
    root = os.environ.get("KAIZEN_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "kaizen"
    return base / "wheels"


def _index_cache(cache: Path) -> dict[str, Path]:
    """sha256 -> wheel path for the wheels in the cache."""
    out: dict[str, Path] = {}
    index = cache / "SHA256SUMS"
    known: dict[str, str] = {}
    if index.exists():
        for line in index.read_text().splitlines():
            digest, _, name = line.partition("  ")
            known[name] = digest
    changed = False
    for whl in cache.glob("*.whl"):
        digest = known.get(whl.name)
        if digest is None:
            digest = sha256_file(whl)
            known[whl.name] = digest
            changed = True
        out[digest] = whl
    if changed:
        index.write_text("".join(f"{d}  {n}\n" for n, d in sorted(known.items())))
    return out


def ensure_wheels(
    pins: Iterable[Pin],
    *,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    arch: str = HOST_ARCH,
) -> list[Path]:
    """Return the cached wheel of each pin (for `arch`), downloading the missing ones
    (hash-checked)."""
    cache = cache or wheel_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    pins = list(pins)
    by_hash = _index_cache(cache)
    missing = [p for p in pins if not any(h in by_hash for h in p.hashes)]
    if missing:
        log(f"downloading {len(missing)} locked wheel(s) into {cache}")
        with tempfile.TemporaryDirectory(prefix="kaizen-wheels-") as tmp:
            req = Path(tmp) / "req.txt"
            req.write_text(
                "".join(
                    f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in p.hashes)
                    + "\n"
                    for p in missing
                )
            )
            dest = Path(tmp) / "dl"
            cmd = [*_pip(), "download", "--isolated", "-q", "--no-deps", "--require-hashes"]
            cert = os.environ.get("PIP_CERT")
            if cert:
                cmd += ["--cert", cert]
            cmd += ["-d", str(dest), *_platform_args(arch), "-r", str(req)]
            proc = subprocess.run(
                cmd, env=_clean_env(), capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                names = ", ".join(f"{p.name}=={p.version}" for p in missing)
                raise LockError(
                    f"cannot fetch locked wheels ({names}) and they are not in the wheel cache "
                    f"{cache}:\n{proc.stderr[-1500:]}"
                )
            for whl in dest.glob("*.whl"):
                shutil.move(str(whl), cache / whl.name)
        by_hash = _index_cache(cache)
    out: list[Path] = []
    for pin in pins:
        found = next((by_hash[h] for h in pin.hashes if h in by_hash), None)
        if found is None:
            raise LockError(f"wheel for {pin.name}=={pin.version} missing from {cache}")
        out.append(found)
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    arch = HOST_ARCH
    if "--arch" in args:
        at = args.index("--arch")
        arch = args[at + 1]
        del args[at : at + 2]
    for flavor in args or sorted(FLAVORS):
        path = compile_lock(flavor, arch=arch)
        print(f"wrote {path} ({len(read_lock(path))} pins)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
