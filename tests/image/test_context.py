"""Build context and locks: no Docker engine needed (registry parsing, records and auth are in
test_registry.py, test_records.py and test_auth.py)."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from model_packages.errors import PackageError
from model_packages.image import locks
from model_packages.image.build import build_package
from model_packages.image.context import Bases, context_tar, generate_context, oci_labels
from model_packages.manifest import read_manifest
from tests.support import EXAMPLES

RUNTIME_IMAGE = "kaizen-base/python:3.11-bookworm-runtime"
FORBIDDEN_IN_IMAGES = {"typer", "rich", "docker", "boto3", "botocore", "click", "requests"}


@pytest.mark.parametrize("flavor", ["sklearn", "onnx", "xgboost", "lightgbm"])
def test_locks_are_hashed_and_hold_only_runtime_dependencies(flavor: str) -> None:
    pins = locks.read_lock(locks.lock_path(flavor))
    names = {p.key for p in pins}
    assert all(p.hashes and all(len(h) == 64 for h in p.hashes) for p in pins)
    assert {"numpy", "pydantic", "pyyaml", "httptools", "uvloop", "prometheus-client"} <= names
    assert not names & FORBIDDEN_IN_IMAGES
    if flavor == "sklearn":
        assert {"scikit-learn", "scipy", "skops"} <= names and "onnxruntime" not in names
    elif flavor in ("xgboost", "lightgbm"):
        framework = "xgboost-cpu" if flavor == "xgboost" else "lightgbm"
        assert framework in names and not {"scikit-learn", "onnxruntime", "pandas"} & names
    else:
        assert "onnxruntime" in names and not {"scikit-learn", "scipy"} & names


def test_wheel_cache_serves_every_locked_wheel_by_hash() -> None:
    pins = locks.read_lock(locks.lock_path("onnx"))
    wheels = locks.ensure_wheels(pins)
    for pin, wheel in zip(pins, wheels, strict=True):
        assert locks.sha256_file(wheel) in pin.hashes
        assert "cp311" in wheel.name or "py3" in wheel.name or "abi3" in wheel.name


def _tar_bytes(directory: Path) -> bytes:
    return context_tar(directory).getvalue()


def test_context_is_deterministic_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    one = generate_context(EXAMPLES / "iris-classifier", tmp_path / "a", bases=Bases.local())
    two = generate_context(EXAMPLES / "iris-classifier", tmp_path / "b", bases=Bases.local())
    assert _tar_bytes(one.directory) == _tar_bytes(two.directory)
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes(one.directory))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {m.mtime for m in members} == {1700000000}
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert "model/opt/kaizen/model/kaizen.yaml" in names
    assert "model/opt/kaizen/model/model.skops" in names
    assert "runtime/opt/kaizen/lib/model_packages/serving/server.py" in names
    # Only what the runtime needs: no CLI, no image tooling.
    assert not [n for n in names if n.startswith("runtime/") and ("/image/" in n or "cli.py" in n)]
    assert one.tag == "kaizen/iris-classifier:1.0.0"


def test_dockerfile_is_multistage_offline_nonroot_and_ordered(tmp_path: Path) -> None:
    ctx = generate_context(EXAMPLES / "diabetes-regressor", tmp_path / "c", bases=Bases.local())
    text = ctx.dockerfile.read_text()
    assert "# syntax" not in text
    assert text.count("FROM ") == 3
    assert "--no-index" in text and "--require-hashes" in text
    assert 'ENTRYPOINT ["/opt/venv/bin/python", "-m", "model_packages.serving"]' in text
    assert 'CMD ["serve"]' in text
    assert "USER 10001:10001" in text
    order = [text.index(s) for s in ("COPY --from=deps", "COPY --from=runtime", "COPY model/ /")]
    assert order == sorted(order)
    for label in ("source", "revision", "version", "created"):
        assert f"org.opencontainers.image.{label}=" in text
    assert 'io.kaizen.model.name="diabetes-regressor"' in text
    assert f'io.kaizen.model.artifact-sha256="{ctx.manifest.artifact_sha256}"' in text
    assert "onnxruntime" in (ctx.directory / "requirements.lock").read_text()


class _NoBuildClient:
    """A Docker client that fails the test if a build is ever attempted."""

    class images:
        @staticmethod
        def get(ref: str) -> object:
            return object()

    class api:
        @staticmethod
        def build(**_kwargs: Any) -> None:
            raise AssertionError("a package that fails validation must never be built")


def test_invalid_package_is_never_built(tmp_path: Path) -> None:
    package = Path(shutil.copytree(EXAMPLES / "iris-classifier", tmp_path / "bad"))
    (package / "model.skops").write_bytes(b"PK\x03\x04 tampered")
    with pytest.raises(PackageError, match="corrupt"):
        build_package(package, bases=Bases.local(), client=_NoBuildClient())
    with pytest.raises(PackageError):
        generate_context(package, tmp_path / "ctx", bases=Bases.local())
    assert not (tmp_path / "ctx").exists()


def test_default_base_is_upstream_pinned_by_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIZEN_BASE_IMAGE", raising=False)
    monkeypatch.delenv("KAIZEN_BUILDER_IMAGE", raising=False)
    bases = Bases.choose(None, None)
    assert bases.runtime == bases.builder
    assert re.fullmatch(r"docker\.io/library/python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", bases.runtime)
    ctx = generate_context(EXAMPLES / "iris-classifier", tmp_path / "ctx", bases=bases)
    froms = [line for line in ctx.dockerfile.read_text().splitlines() if line.startswith("FROM ")]
    assert froms and all("@sha256:" in line for line in froms)
    assert Bases.choose("kaizen-base/python:3.11-bookworm-runtime", None) == Bases.local()


def test_image_settings_are_read_at_command_time_and_passed_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """KAIZEN_BASE_IMAGE, KAIZEN_BUILDER_IMAGE, KAIZEN_IMAGE_SOURCE and the Debian mirrors are read by
    ImageSettings.from_env only (base.py read the mirror at import time); library calls take them."""
    import subprocess
    import sys

    from model_packages.image import base
    from model_packages.image.settings import DEFAULT_SETTINGS, ImageSettings

    env = {"KAIZEN_BASE_IMAGE": "r:5000/py@sha256:" + "1" * 64, "KAIZEN_BUILDER_IMAGE": "r:5000/b@sha256:" + "2" * 64,
           "KAIZEN_IMAGE_SOURCE": "https://tok:secret@git.example/m.git", "KAIZEN_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    imported = subprocess.run([sys.executable, "-c", "from model_packages.image import base; "
                               "print(base.SPECS['runtime'].mirror)"], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "http://deb.debian.org/debian"  # importing reads nothing
    assert Bases.choose(None, None) == Bases.upstream()  # no settings given: no environment read either
    settings = ImageSettings.from_env()
    assert Bases.choose(None, None, settings) == Bases(env["KAIZEN_BASE_IMAGE"], env["KAIZEN_BUILDER_IMAGE"])
    assert Bases.choose("x", "y", settings) == Bases("x", "y")
    mirrored = base.variant_spec("runtime", (), "amd64", settings)
    assert f"deb {env['KAIZEN_DEBIAN_MIRROR']} bookworm main" in base.mmdebstrap_command(mirrored, Path("/x"))
    assert mirrored.cache_key() != base.variant_spec("runtime").cache_key() and mirrored.image == RUNTIME_IMAGE
    assert base.variant_spec("runtime", (), "amd64", DEFAULT_SETTINGS) is base.SPECS["runtime"]
    labels = oci_labels(read_manifest(EXAMPLES / "iris-classifier"), flavor="onnx", lock_sha256="0" * 64,
                        source=settings.image_source, revision="r")
    assert labels["org.opencontainers.image.source"] == "https://git.example/m.git"


class _EngineStub:
    """Local bases present; the build itself is where the test stops (nothing reaches an engine)."""

    class images:
        @staticmethod
        def get(ref: str) -> Any:
            return type("Image", (), {"attrs": {"Os": "linux", "Architecture": "amd64"}})()

    class api:
        @staticmethod
        def build(**_kwargs: Any) -> None:
            raise _BuildReached


class _BuildReached(Exception):
    pass


def test_a_build_verifies_its_package_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kaizen build` -> build_package -> generate_context pass the verified manifest along: the
    artifacts are hashed once per build (they were three times), per platform too."""
    from typer.testing import CliRunner

    from model_packages import verify
    from model_packages.cli import app

    hashed: list[str] = []
    real = verify._package_file  # every verification (whichever caller) checks the artifact through it

    def counting(directory: Path, name: str, what: str) -> Path:
        if what == "artifact":
            hashed.append(name)
        return real(directory, name, what)

    monkeypatch.setattr(verify, "_package_file", counting)
    package = EXAMPLES / "iris-classifier"
    with pytest.raises(_BuildReached):
        build_package(package, bases=Bases.local(), client=_EngineStub())
    assert len(hashed) == 1
    hashed.clear()
    with pytest.raises(_BuildReached):
        build_package(package, bases=Bases.local(), client=_EngineStub(), manifest=verify.verify_files(package))
    assert len(hashed) == 1  # the caller's verification only
    hashed.clear()
    result = CliRunner().invoke(app, ["build", str(package), "--local-base", "--context-only", "--context-dir",
                                      str(tmp_path / "ctx"), "--platform", "linux/amd64,linux/arm64"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ctx").iterdir()) == ["linux-amd64", "linux-arm64"]
    assert len(hashed) == 1


def test_model_and_trainer_contexts_share_one_platform_helper() -> None:
    from model_packages.image.base import BaseImageError
    from model_packages.image.context import BuildContext, ContextFiles
    from model_packages.image.trainer import TrainerContext

    for cls in (BuildContext, TrainerContext):
        assert issubclass(cls, ContextFiles) and "platform" not in vars(cls) and "dockerfile" not in vars(cls)
    trainer = TrainerContext(Path("/ctx"), "kaizen/t:1", "iris", arch="arm64")
    assert (trainer.platform, trainer.dockerfile) == ("linux/arm64", Path("/ctx/Dockerfile"))
    with pytest.raises(BaseImageError, match="s390x"):
        _ = TrainerContext(Path("/ctx"), "kaizen/t:1", "iris", arch="s390x").platform
