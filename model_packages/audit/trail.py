"""The audit trail: append-only JSON lines, each a signed in-toto statement whose predicate is one
record, and each record carries the SHA-256 of the one before.

    {"payloadType": "application/vnd.in-toto+json", "payload": "<base64 statement>",
     "signatures": [{"keyid": "<sha256 of the public key>", "sig": "<base64 Ed25519>"}]}
    statement: {"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "<image or record>", "digest": {"sha256": "…"}}],
                "predicateType": "https://kaizen.dev/audit-record/v1",
                "predicate": {"seq": 3, "at": "…Z", "event": "deploy", "stack": "prod",
                              "image": "…@sha256:…", "actor": "…", "prev": "<hash of record 2>"}}

Envelopes are DSSE (signature over the pre-authentication encoding). Where a CI identity exists, a
line is instead a Sigstore bundle carrying the same envelope, signed keylessly
(:mod:`model_packages.audit.keyless`). The file is
`$KAIZEN_AUDIT_TRAIL` (default `.kaizen/audit.jsonl`), the signing key `$KAIZEN_AUDIT_KEY`
(default `~/.kaizen/audit-key.pem`, an Ed25519 key created on first use, mode 0600; its public
half beside it as `.pub`). :func:`read` checks the chain and every signature, so an edited,
reordered, deleted or unsigned record is caught; an anchor (:func:`anchor`, kept elsewhere: a git
note or a stack output) also catches a truncated tail.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from model_packages.audit import keyless
from model_packages.errors import KaizenError

GENESIS = "0" * 64
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://kaizen.dev/audit-record/v1"


class AuditError(KaizenError):
    """The audit trail is unreadable, unsigned, or its chain is broken."""


def trail_path(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("KAIZEN_AUDIT_TRAIL", ".kaizen/audit.jsonl"))


def key_path() -> Path:
    return Path(os.environ.get("KAIZEN_AUDIT_KEY", str(Path.home() / ".kaizen" / "audit-key.pem")))


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- keys and DSSE -----------------------------------------------------------------------------------
def _private_key() -> Ed25519PrivateKey:
    path = key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        path.with_suffix(".pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 private key")
    return loaded


def public_key_pem() -> bytes:
    """The signing key's public half (PEM), to verify this writer's records elsewhere."""
    return _private_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)


def public_keys() -> dict[str, Ed25519PublicKey]:
    """Trusted verification keys by key id: `$KAIZEN_AUDIT_PUBKEYS` (PEM files, ':'-separated),
    else the public half of the signing key."""
    files = [Path(p) for p in os.environ.get("KAIZEN_AUDIT_PUBKEYS", "").split(":") if p]
    if not files:
        if not key_path().exists():
            return {}
        files = [key_path().with_suffix(".pub")]
    keys: dict[str, Ed25519PublicKey] = {}
    for file in files:
        try:
            key = serialization.load_pem_public_key(file.read_bytes())
        except (OSError, ValueError) as err:
            raise AuditError(f"cannot read audit public key {file}: {err}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditError(f"{file} is not an Ed25519 public key")
        keys[_keyid(key)] = key
    return keys


def _keyid(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()


def _pae(payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    kind = PAYLOAD_TYPE.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign(statement: dict[str, Any], key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    """A DSSE envelope of `statement`, signed with the audit key."""
    key = key or _private_key()
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": _keyid(key.public_key()), "sig": base64.b64encode(key.sign(_pae(payload))).decode()}],
    }


def open_envelope(envelope: Any, keys: dict[str, Ed25519PublicKey], where: str) -> dict[str, Any]:
    """The statement inside a DSSE envelope, once a trusted key's signature over it checks out."""
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        raise AuditError(f"{where}: not a signed statement")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json.loads(payload)
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, ValueError):
        raise AuditError(f"{where}: malformed envelope") from None
    if not keys:
        raise AuditError(f"{where}: no public key to verify the signature with (set KAIZEN_AUDIT_PUBKEYS)")
    verified = False
    for signature in signatures:
        key = keys.get(str(signature.get("keyid")))
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(signature["sig"]), _pae(payload))
            verified = True
        except (InvalidSignature, KeyError, ValueError):
            raise AuditError(f"{where}: the signature does not match the record (edited?)") from None
    if not verified:
        raise AuditError(f"{where}: signed by no trusted key")
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise AuditError(f"{where}: not an in-toto statement")
    return statement


def open_statement(line: Any, keys: dict[str, Ed25519PublicKey], where: str,
                   also_trust: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The statement of a trail line or provenance file: a DSSE envelope signed by a trusted key, or a
    Sigstore bundle signed keylessly by a trusted identity (configured ones plus `also_trust`)."""
    if not keyless.is_bundle(line):
        return open_envelope(line, keys, where)
    try:
        payload = keyless.open_bundle(line, where, PAYLOAD_TYPE, also_trust)
        statement = json.loads(payload)
    except keyless.KeylessError as error:
        raise AuditError(str(error)) from None
    except ValueError:
        raise AuditError(f"{where}: the signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise AuditError(f"{where}: not an in-toto statement")
    return statement


class KeySigner:
    """Signs with the local audit key (`$KAIZEN_AUDIT_KEY`)."""

    def __init__(self) -> None:
        self.key = _private_key()
        self.own_keys = {_keyid(self.key.public_key()): self.key.public_key()}
        self.own_identities: tuple[tuple[str, str], ...] = ()

    def sign(self, statement: dict[str, Any]) -> dict[str, Any]:
        return sign(statement, self.key)


class SigstoreSigner:
    """Signs keylessly for the CI's OIDC identity."""

    def __init__(self, token: str) -> None:
        self.signer = keyless.KeylessSigner(token)
        self.own_keys: dict[str, Ed25519PublicKey] = {}
        self.own_identities = (self.signer.identity,)

    def sign(self, statement: dict[str, Any]) -> dict[str, Any]:
        return self.signer.sign(statement)


def current_signer() -> KeySigner | SigstoreSigner:
    """Keyless where a CI identity exists (or `KAIZEN_AUDIT_SIGNER=sigstore` demands it), else the key."""
    mode = keyless.signer_mode()
    if mode == "key":
        return KeySigner()
    token = keyless.ambient_token()
    if token:
        return SigstoreSigner(token)
    if mode == "sigstore":
        raise AuditError("KAIZEN_AUDIT_SIGNER=sigstore and no CI identity: run where the CI offers an OIDC token "
                         "(GitHub Actions: permissions id-token: write) or set KAIZEN_SIGSTORE_IDENTITY_TOKEN")
    return KeySigner()


def sign_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """`statement` signed by :func:`current_signer`: a DSSE envelope or a Sigstore bundle."""
    return current_signer().sign(statement)


def _statement(record: dict[str, Any]) -> dict[str, Any]:
    image = str(record.get("image", ""))
    subject = ({"name": image.split("@", 1)[0], "digest": {"sha256": image.rsplit(":", 1)[1]}}
               if "@sha256:" in image else {"name": f"kaizen-audit-record-{record['seq']}",
                                            "digest": {"sha256": record_hash(record)}})
    return {"_type": STATEMENT_TYPE, "subject": [subject], "predicateType": PREDICATE_TYPE, "predicate": record}


def _open(line: Any, keys: dict[str, Ed25519PublicKey], where: str,
          also_trust: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    statement = open_statement(line, keys, where, also_trust)
    record = statement.get("predicate")
    if statement.get("predicateType") != PREDICATE_TYPE or not isinstance(record, dict):
        raise AuditError(f"{where}: not a Kaizen audit statement")
    return record


# ---- the trail ---------------------------------------------------------------------------------------
def read(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every record, oldest first; chain and signatures verified on the way."""
    return list(_verified(trail_path(path), public_keys()))


def _verified(file: Path, keys: dict[str, Ed25519PublicKey],
              also_trust: tuple[tuple[str, str], ...] = ()) -> Iterator[dict[str, Any]]:
    if not file.exists():
        return
    prev = GENESIS
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{file}:{number}"
            try:
                envelope = json.loads(line)
            except ValueError:
                raise AuditError(f"{where}: not a JSON record") from None
            record = _open(envelope, keys, where, also_trust)
            if record.get("seq") != number:
                raise AuditError(f"{where}: record out of sequence (seq {record.get('seq')})")
            if record.get("prev") != prev:
                raise AuditError(f"{where}: the chain is broken (the record before was changed or removed)")
            prev = record_hash(record)
            yield record


def append(event: str, path: str | Path | None = None, **fields: Any) -> dict[str, Any]:
    """Sign and append one record (under an exclusive lock); return it."""
    file = trail_path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    signer = current_signer()
    with file.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        records = list(_verified(file, public_keys() | signer.own_keys, signer.own_identities))
        record = {
            "seq": len(records) + 1,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event": event,
            **fields,
            "prev": record_hash(records[-1]) if records else GENESIS,
        }
        handle.write(json.dumps(signer.sign(_statement(record)), sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record


def anchor(path: str | Path | None = None) -> dict[str, Any]:
    """The head of the trail, {"seq": n, "head": hash}, to keep somewhere the trail's writer cannot
    rewrite (a git note, a stack output): :func:`verify` then also catches a truncated tail."""
    records = read(path)
    return {"seq": len(records), "head": record_hash(records[-1]) if records else GENESIS}


def verify(path: str | Path | None = None, anchored: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Check chain and signatures and, with an anchor, that the trail still holds the anchored head."""
    records = read(path)
    if anchored is not None:
        seq = int(anchored.get("seq", 0))
        if seq > len(records):
            raise AuditError(f"{trail_path(path)} ends at record {len(records)}, the anchor is at {seq}: "
                             "records were removed from the end")
        if seq and record_hash(records[seq - 1]) != anchored.get("head"):
            raise AuditError(f"{trail_path(path)}: record {seq} is not the anchored one")
    return records
