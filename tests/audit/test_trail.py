"""The signed, hash-chained audit trail: every kind of tampering is caught."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from model_packages.audit import trail

IMAGE = "127.0.0.1:5000/kaizen/iris@sha256:"


@pytest.fixture
def path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    monkeypatch.delenv("KAIZEN_AUDIT_PUBKEYS", raising=False)
    file = tmp_path / "audit.jsonl"
    for n in range(4):
        trail.append("deploy", file, stack="prod", image=IMAGE + str(n) * 64, actor="ci")
    return file


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _edit_payload(line: str, **changes: object) -> dict[str, object]:
    envelope = json.loads(line)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"].update(changes)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return envelope


def test_records_are_signed_in_toto_statements_about_the_image(path: Path) -> None:
    records = trail.read(path)
    assert [r["seq"] for r in records] == [1, 2, 3, 4] and records[0]["prev"] == trail.GENESIS
    envelope = json.loads(_lines(path)[1])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": IMAGE.split("@")[0], "digest": {"sha256": "1" * 64}}]
    assert (path.parent / "key.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kind", ["edited", "reordered", "deleted", "garbage", "unsigned"])
def test_tampering_is_caught(path: Path, kind: str) -> None:
    lines = _lines(path)
    if kind == "edited":
        lines[1] = json.dumps(_edit_payload(lines[1], image=IMAGE + "f" * 64))
    elif kind == "reordered":
        lines[1], lines[2] = lines[2], lines[1]
    elif kind == "deleted":
        del lines[1]
    elif kind == "garbage":
        lines[2] = "{not json"
    else:
        envelope = json.loads(lines[3])
        envelope["signatures"] = []
        lines[3] = json.dumps(envelope)
    _write(path, lines)
    with pytest.raises(trail.AuditError, match=r"audit.jsonl:[234]"):
        trail.read(path)


def test_a_record_re_signed_by_another_key_is_not_trusted(path: Path) -> None:
    lines = _lines(path)
    forged = _edit_payload(lines[3], image=IMAGE + "e" * 64)
    other = Ed25519PrivateKey.generate()
    payload = base64.b64decode(str(forged["payload"]))
    forged["signatures"] = [{"keyid": "f" * 64, "sig": base64.b64encode(other.sign(trail._pae(payload))).decode()}]
    _write(path, [*lines[:3], json.dumps(forged)])
    with pytest.raises(trail.AuditError, match="signed by no trusted key"):
        trail.read(path)


def test_truncating_the_tail_is_caught_by_the_anchor(path: Path) -> None:
    anchored = trail.anchor(path)
    assert anchored["seq"] == 4
    assert len(trail.verify(path, anchored)) == 4
    trail.append("rollback", path, stack="prod", image=IMAGE + "0" * 64)
    assert len(trail.verify(path, anchored)) == 5  # growing past the anchor is fine
    _write(path, _lines(path)[:3])
    assert len(trail.read(path)) == 3  # a clean prefix verifies on its own...
    with pytest.raises(trail.AuditError, match="removed from the end"):
        trail.verify(path, anchored)  # ...but not against the anchor


def test_a_rewritten_history_does_not_match_the_anchor(path: Path, tmp_path: Path) -> None:
    anchored = trail.anchor(path)
    rewritten = tmp_path / "rewritten.jsonl"
    for n in range(4):
        trail.append("deploy", rewritten, stack="prod", image=IMAGE + str(9 - n) * 64)
    with pytest.raises(trail.AuditError, match="not the anchored one"):
        trail.verify(rewritten, anchored)


def test_only_the_configured_public_keys_are_trusted(path: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("KAIZEN_AUDIT_PUBKEYS", str(other))
    with pytest.raises(trail.AuditError, match="signed by no trusted key"):
        trail.read(path)
    monkeypatch.setenv("KAIZEN_AUDIT_PUBKEYS", f"{other}:{tmp_path / 'key.pub'}")
    assert len(trail.read(path)) == 4


def test_cli_logs_verifies_and_anchors_in_a_git_note(path: Path, tmp_path: Path) -> None:
    import subprocess

    from typer.testing import CliRunner

    from model_packages.cli import app

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty",
                                  "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    runner = CliRunner()
    shown = runner.invoke(app, ["audit", "log", "--trail", str(path), "--json"])
    assert shown.exit_code == 0 and len(json.loads(shown.stdout)) == 4
    anchored = runner.invoke(app, ["audit", "anchor", "--trail", str(path), "--git", str(repo)])
    assert anchored.exit_code == 0, anchored.output
    ok = runner.invoke(app, ["audit", "verify", "--trail", str(path), "--anchor-git", str(repo)])
    assert ok.exit_code == 0 and "anchored at 4" in ok.output
    _write(path, _lines(path)[:2])
    cut = runner.invoke(app, ["audit", "verify", "--trail", str(path), "--anchor-git", str(repo)])
    assert cut.exit_code == 1 and "removed from the end" in cut.output
