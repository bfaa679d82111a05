"""Platforms without an engine: names, arm64 bases and locks, the OCI index document."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_packages.image import base, locks
from model_packages.image.base import BaseImageError, arch_for_platform, variant_spec
from model_packages.image.context import Bases, generate_context
from model_packages.image.multiarch import OCI_INDEX, index_manifest, parse_platforms, platform_tag
from model_packages.image.registry import PushError
from tests.support import ROOT


@pytest.mark.parametrize(("text", "arch"), [("linux/arm64", "arm64"), ("arm64", "arm64"), ("linux/arm64/v8", "arm64"),
                                            ("linux/amd64", "amd64"), ("linux/aarch64", "arm64"), ("x86_64", "amd64")])
def test_platform_names(text: str, arch: str) -> None:
    assert arch_for_platform(text) == arch


@pytest.mark.parametrize("text", ["linux/s390x", "windows/amd64", "linux/arm/v7", "darwin/arm64"])
def test_unsupported_platforms_are_refused(text: str) -> None:
    with pytest.raises(BaseImageError, match="only linux/amd64 and linux/arm64"):
        arch_for_platform(text)


def test_parse_platforms() -> None:
    assert parse_platforms("linux/amd64, linux/arm64") == ["linux/amd64", "linux/arm64"]
    with pytest.raises(PushError, match="listed twice"):
        parse_platforms("linux/arm64,arm64")
    with pytest.raises(PushError, match="no platform"):
        parse_platforms(" , ")
    assert platform_tag("kaizen/iris:1.0.0", "linux/arm64") == "kaizen/iris:1.0.0-arm64"


def test_arm64_bases_are_their_own_images_and_keep_the_host_keys() -> None:
    for kind in ("runtime", "builder"):
        host, arm = variant_spec(kind), variant_spec(kind, (), "arm64")
        assert host is base.SPECS[kind]  # amd64 bases (and their cache) are unchanged
        assert arm.image == f"{host.image}-arm64" and arm.platform == "linux/arm64"
        assert arm.cache_key() != host.cache_key()
        assert base.rootfs_path(arm).name.startswith(f"bookworm-arm64-{kind}-")
        command = base.mmdebstrap_command(arm, Path("/tmp/x.tar.gz"))
        assert "--arch=arm64" in command and "--arch=arm64" not in base.mmdebstrap_command(host, Path("/x"))
    runtime = " ".join(base.mmdebstrap_command(variant_spec("runtime", (), "arm64"), Path("/x")))
    assert "aarch64-linux-gnu/gconv" in runtime and "x86_64-linux-gnu" not in runtime
    assert variant_spec("runtime", ("libgomp1",), "arm64").image.endswith("-libgomp1-arm64")
    assert Bases.local().for_arch("arm64") == Bases.local("arm64")
    upstream = Bases.upstream()
    assert upstream.for_arch("arm64") == upstream  # a multi-platform reference: the engine picks


@pytest.mark.parametrize("flavor", sorted(set(locks.FLAVORS) - {"trainer"}))  # the trainer image is amd64 only
def test_arm64_locks_pin_the_host_versions_with_aarch64_wheels(flavor: str) -> None:
    host = {p.key: p for p in locks.read_lock(locks.lock_path(flavor))}
    arm = {p.key: p for p in locks.read_lock(locks.lock_path(flavor, "arm64"))}
    assert set(arm) <= set(host)
    for key, pin in arm.items():
        assert pin.version == host[key].version, key
    compiled = {"numpy", "pydantic-core", "pyyaml", "httptools", "uvloop"}
    for key in compiled & set(arm):  # platform wheels: other files, other hashes
        assert set(arm[key].hashes).isdisjoint(host[key].hashes), key


def test_missing_arch_lock_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "LOCK_DIR", tmp_path)
    with pytest.raises(locks.LockError, match=r"flavor 'onnx' on arm64 .*--arch arm64 onnx"):
        locks.lock_path("onnx", "arm64")
    with pytest.raises(locks.LockError, match="architecture 'riscv64'"):
        locks.lock_path("onnx", "riscv64")


@pytest.mark.slow  # fetches the arm64 wheels from PyPI the first time
def test_arm64_context_uses_arm64_bases_lock_and_wheels(tmp_path: Path) -> None:
    ctx = generate_context(ROOT / "examples" / "iris-classifier", tmp_path / "ctx", bases=Bases.local(), arch="arm64")
    dockerfile = ctx.dockerfile.read_text()
    assert f"FROM {base.BUILDER_BASE}-arm64 AS deps" in dockerfile
    assert f"FROM {base.RUNTIME_BASE}-arm64\n" in dockerfile
    assert (tmp_path / "ctx" / "requirements.lock").read_bytes() == locks.lock_path("onnx", "arm64").read_bytes()
    wheels = sorted(p.name for p in (tmp_path / "ctx" / "wheels").iterdir())
    assert not [w for w in wheels if "x86_64" in w]
    assert [w for w in wheels if w.startswith("onnxruntime-") and "aarch64" in w]
    assert ctx.platform == "linux/arm64"


def test_index_document() -> None:
    entries = [("linux/amd64", {"mediaType": "m", "digest": "sha256:" + "a" * 64, "size": 10}),
               ("linux/arm64", {"mediaType": "m", "digest": "sha256:" + "b" * 64, "size": 11})]
    index = index_manifest(entries, {"org.opencontainers.image.version": "1.0.0"})
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [{"architecture": "amd64", "os": "linux"},
                                                           {"architecture": "arm64", "os": "linux"}]
    assert index["manifests"][1]["size"] == 11
