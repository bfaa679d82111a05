"""Verify a model package's files: manifest, hashes, formats; nothing is loaded or imported.

The lowest layer of the package format: `loading` and `package` both build on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from model_packages.errors import PackageError
from model_packages.manifest import MANIFEST_NAME, Manifest, read_manifest
from model_packages.onnx_check import refuse_external_data

_SKOPS_MAGIC = b"PK\x03\x04"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_file(directory: Path, name: str, what: str) -> Path:
    """The path of a file the manifest names: a regular file inside the package, never a symlink."""
    path = directory / name
    if path.is_symlink():
        raise PackageError(f"{what} {name} is a symlink; a package must hold its files, not links to them")
    if not path.is_file():
        raise PackageError(f"{what} {name} named in {MANIFEST_NAME} is missing")
    if path.resolve().parent != directory.resolve():
        raise PackageError(f"{what} {name} resolves outside the package directory")
    return path


def verify_files(package_dir: str | Path) -> Manifest:
    """Check a package without loading it: manifest schema, artifact presence, hash and format.

    Every file the model reads is covered by a hash: symlinks are refused, and so are ONNX models
    that keep tensor data in side files (external data)."""
    directory = Path(package_dir)
    if (directory / MANIFEST_NAME).is_symlink():
        raise PackageError(f"{MANIFEST_NAME} in {directory} is a symlink; a package must hold its files")
    manifest = read_manifest(directory)
    artifact = _package_file(directory, manifest.artifact, "artifact")
    actual = sha256_file(artifact)
    if actual != manifest.artifact_sha256:
        raise PackageError(
            f"artifact {manifest.artifact} is corrupt: sha256 {actual} does not match "
            f"artifact_sha256 {manifest.artifact_sha256} in {MANIFEST_NAME}"
        )
    if manifest.format == "onnx":
        refuse_external_data(artifact.read_bytes(), manifest.artifact)
    if manifest.serving is not None:
        serving = _package_file(directory, manifest.serving.artifact, "serving artifact")
        if sha256_file(serving) != manifest.serving.artifact_sha256:
            raise PackageError(
                f"serving artifact {manifest.serving.artifact} is corrupt: its sha256 does not match "
                f"serving.artifact_sha256 in {MANIFEST_NAME}"
            )
        refuse_external_data(serving.read_bytes(), manifest.serving.artifact)
    if manifest.format == "skops":
        with open(artifact, "rb") as handle:
            if handle.read(4) != _SKOPS_MAGIC:
                raise PackageError(f"artifact {manifest.artifact} is not a skops file")
    return manifest
