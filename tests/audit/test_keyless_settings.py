"""Choosing between the local key and keyless signing, and the errors that name what is missing
(no Sigstore instance needed; tests/audit/test_keyless.py signs against a real one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_packages.audit import keyless, trail

BUNDLE = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {},
          "dsseEnvelope": {"payload": "", "payloadType": trail.PAYLOAD_TYPE, "signatures": []}}


@pytest.fixture(autouse=True)
def no_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (*keyless.CI_MARKERS, "KAIZEN_AUDIT_SIGNER", "KAIZEN_SIGSTORE_IDENTITY_TOKEN",
                 "KAIZEN_AUDIT_ISSUER", "KAIZEN_AUDIT_IDENTITY", "KAIZEN_AUDIT_PUBKEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))


def test_outside_ci_auto_signs_with_the_local_key(tmp_path: Path) -> None:
    assert isinstance(trail.current_signer(), trail.KeySigner)
    trail.append("deploy", tmp_path / "a.jsonl", stack="s")
    line = json.loads((tmp_path / "a.jsonl").read_text())
    assert line["payloadType"] == trail.PAYLOAD_TYPE and not keyless.is_bundle(line)


def test_demanding_keyless_without_a_ci_identity_names_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "sigstore")
    with pytest.raises(trail.AuditError, match="id-token: write"):
        trail.append("deploy", tmp_path / "a.jsonl", stack="s")
    assert not (tmp_path / "a.jsonl").exists() or (tmp_path / "a.jsonl").read_text() == ""


def test_an_unknown_signer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "gpg")
    with pytest.raises(keyless.KeylessError, match="not one of auto, key, sigstore"):
        trail.current_signer()


def test_a_ci_that_refuses_its_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # GitHub Actions, but without id-token: write
    monkeypatch.setenv("KAIZEN_AUDIT_SIGNER", "sigstore")
    with pytest.raises(keyless.KeylessError, match="CI identity could not be obtained"):
        trail.current_signer()


def test_a_malformed_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_SIGSTORE_IDENTITY_TOKEN", "not-a-jwt")
    with pytest.raises(keyless.KeylessError, match="identity token is unusable"):
        trail.current_signer()


def test_a_keyless_record_needs_a_trusted_identity(tmp_path: Path) -> None:
    file = tmp_path / "a.jsonl"
    file.write_text(json.dumps(BUNDLE) + "\n")
    with pytest.raises(trail.AuditError, match="KAIZEN_AUDIT_ISSUER and KAIZEN_AUDIT_IDENTITY"):
        trail.read(file)


def test_a_malformed_bundle_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAIZEN_AUDIT_ISSUER", "https://token.actions.githubusercontent.com")
    monkeypatch.setenv("KAIZEN_AUDIT_IDENTITY", "https://github.com/o/r/.github/workflows/w.yaml@refs/heads/main")
    file = tmp_path / "a.jsonl"
    file.write_text(json.dumps(BUNDLE) + "\n")
    with pytest.raises(trail.AuditError, match=r"a\.jsonl:1: malformed Sigstore bundle"):
        trail.read(file)
