"""Keyless audit signing against a real private Sigstore instance on 127.0.0.1 (Fulcio, a CT log, a
timestamp authority, Rekor v2; scripts/sigstore-local.sh), with a stand-in for the CI's token
service: every record is a Sigstore bundle, and every kind of tampering is caught."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model_packages.audit import keyless, provenance, trail
from model_packages.cli import app
from tests.support import ROOT, unavailable

SCRIPT = ROOT / "scripts" / "sigstore-local.sh"
BIN = Path(os.environ.get("KAIZEN_SIGSTORE_BIN", Path.home() / ".cache/kaizen/sigstore/bin"))
SUBJECT = "kaizen-ci@example.com"  # scripts/oidc_issuer.py's identity
IMAGE = "127.0.0.1:5000/kaizen/iris@sha256:" + "a" * 64
# The local Fulcio's ephemeral CA names its country "USA"; cryptography warns it is not 2 letters.
pytestmark = pytest.mark.filterwarnings("ignore:Attribute's length must be")


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not all((BIN / name).is_file() for name in ("fulcio", "tesseract-posix", "timestamp-server",
                                                   "rekor-server-posix")):
        unavailable(f"the Sigstore servers are not built in {BIN}: bash scripts/sigstore-local.sh build")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        unavailable("scripts/sigstore-local.sh needs root and unshare (private network namespaces)")
    where = tmp_path_factory.mktemp("sigstore")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(where)], capture_output=True, text=True,
                             check=False, timeout=120)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        env = dict(line.split("=", 1) for line in (where / "env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(where)], capture_output=True, check=False, timeout=60)


def _token(env: dict[str, str]) -> str:
    with urllib.request.urlopen(f"{env['OIDC_URL']}/token?sub={SUBJECT}", timeout=10) as answer:
        return answer.read().decode()


@pytest.fixture
def ci(instance: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """A CI job as GitHub Actions runs it (ambient token service), trusting only its own identity."""
    for name in (*keyless.CI_MARKERS, "KAIZEN_SIGSTORE_IDENTITY_TOKEN", "KAIZEN_AUDIT_PUBKEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{instance['OIDC_URL']}/github")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runner-request-token")
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "auto")
    monkeypatch.setenv("KAIZEN_SIGSTORE_TRUST_CONFIG", instance["SIGSTORE_TRUST_CONFIG"])
    monkeypatch.setenv("KAIZEN_AUDIT_ISSUER", instance["OIDC_ISSUER"])
    monkeypatch.setenv("KAIZEN_AUDIT_IDENTITY", SUBJECT)
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    return instance


@pytest.fixture
def signed(ci: dict[str, str], tmp_path: Path) -> Path:
    file = tmp_path / "audit.jsonl"
    trail.append("retrain_run", file, data="sha256:" + "d" * 64)
    trail.append("gate", file, passed=True)
    trail.append("deploy", file, stack="prod", image=IMAGE, actor="ci")
    return file


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_ci_records_are_sigstore_bundles_for_the_ci_identity(signed: Path) -> None:
    lines = [json.loads(x) for x in _lines(signed)]
    assert all(keyless.is_bundle(x) for x in lines)
    assert not (signed.parent / "key.pem").exists(), "no local key is made where a CI identity signs"
    assert all(x["verificationMaterial"]["tlogEntries"] for x in lines), "each is in the transparency log"
    records = trail.verify(signed, trail.anchor(signed))
    assert [r["event"] for r in records] == ["retrain_run", "gate", "deploy"]
    statement = json.loads(base64.b64decode(lines[2]["dsseEnvelope"]["payload"]))
    assert statement["subject"][0] == {"name": IMAGE.split("@")[0], "digest": {"sha256": "a" * 64}}
    out = CliRunner().invoke(app, ["audit", "verify", "--trail", str(signed), "--no-registry"])
    assert out.exit_code == 0 and "3 records" in out.output, out.output


def _edit(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    """A bundle whose signed statement was changed by `change` after signing."""
    bundle = json.loads(text)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    change(statement)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(bundle, sort_keys=True)


@pytest.mark.parametrize("kind", ["edit", "swap-certificate", "reorder", "delete", "drop-log-entry"])
def test_tampering_with_keyless_records_is_caught(signed: Path, kind: str) -> None:
    lines = _lines(signed)
    if kind == "edit":
        lines[1] = _edit(lines[1], lambda statement: statement["predicate"].update(passed=False))
        match = "keyless signature does not verify"
    elif kind == "swap-certificate":  # record 2 with record 1's certificate and log entry
        one, two = json.loads(lines[0]), json.loads(lines[1])
        two["verificationMaterial"] = one["verificationMaterial"]
        lines[1] = json.dumps(two)
        match = "keyless signature does not verify"
    elif kind == "reorder":
        lines[0], lines[1] = lines[1], lines[0]
        match = "out of sequence"
    elif kind == "delete":
        del lines[1]
        match = "out of sequence"
    else:
        bundle = json.loads(lines[2])
        bundle["verificationMaterial"]["tlogEntries"] = []
        lines[2] = json.dumps(bundle)
        match = "malformed Sigstore bundle|does not verify"
    signed.write_text("\n".join(lines) + "\n")
    with pytest.raises(trail.AuditError, match=match):
        trail.read(signed)


def test_truncating_a_keyless_trail_is_caught_by_the_anchor(signed: Path) -> None:
    head = trail.anchor(signed)
    signed.write_text("\n".join(_lines(signed)[:-1]) + "\n")
    assert len(trail.read(signed)) == 2  # still a valid chain on its own
    with pytest.raises(trail.AuditError, match="records were removed from the end"):
        trail.verify(signed, head)


def test_only_the_configured_identity_is_trusted(signed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_AUDIT_IDENTITY", "someone-else@example.com")
    with pytest.raises(trail.AuditError, match="keyless signature does not verify"):
        trail.read(signed)
    monkeypatch.setenv("KAIZEN_AUDIT_IDENTITY", f"someone-else@example.com, {SUBJECT}")
    assert len(trail.read(signed)) == 3
    monkeypatch.setenv("KAIZEN_AUDIT_ISSUER", "https://token.actions.githubusercontent.com")
    monkeypatch.setenv("KAIZEN_AUDIT_IDENTITY", SUBJECT)
    with pytest.raises(trail.AuditError, match="keyless signature does not verify"):
        trail.read(signed)


def test_a_record_signed_by_another_identity_is_not_trusted(signed: Path, ci: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with urllib.request.urlopen(f"{ci['OIDC_URL']}/token?sub=intruder@example.com", timeout=10) as answer:
        monkeypatch.setenv("KAIZEN_SIGSTORE_IDENTITY_TOKEN", answer.read().decode())
    trail.append("deploy", signed, stack="prod", image=IMAGE)  # a real certificate, for the wrong identity
    with pytest.raises(trail.AuditError, match=r"audit\.jsonl:4: the keyless signature does not verify"):
        trail.read(signed)


def test_a_local_key_trail_continues_keylessly(ci: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "mixed.jsonl"
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "key")
    trail.append("package", file, version="1.0.0")
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "sigstore")
    monkeypatch.setenv("KAIZEN_SIGSTORE_IDENTITY_TOKEN", _token(ci))
    trail.append("deploy", file, stack="prod", image=IMAGE)
    kinds = [keyless.is_bundle(json.loads(x)) for x in _lines(file)]
    assert kinds == [False, True]
    assert [r["event"] for r in trail.verify(file)] == ["package", "deploy"]


def test_image_provenance_is_signed_keylessly_too(ci: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "audit.jsonl"
    out = provenance.record_push(IMAGE, {"io.kaizen.model.name": "iris", "io.kaizen.model.version": "1.0.0"}, file)
    assert keyless.is_bundle(json.loads(out.read_text()))
    records = trail.verify(file)
    assert provenance.verify_pushes(records, file, registry_check=False) == 1
    edited = _edit(out.read_text(), lambda statement: statement["subject"][0]["digest"].update(sha256="b" * 64)) + "\n"
    with pytest.raises(trail.AuditError, match="keyless signature does not verify"):
        trail.open_statement(json.loads(edited), {}, out.name)
    out.write_text(edited)
    with pytest.raises(trail.AuditError, match=r"provenance .* was changed"):
        provenance.verify_pushes(records, file, registry_check=False)

