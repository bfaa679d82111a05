"""Prove a local Sigstore instance (scripts/sigstore-local.sh start DIR) works with sigstore-python.

Mints an ID token at the stand-in OIDC issuer, signs an in-toto statement (DSSE) keylessly through
Fulcio, the CT log, the TSA and Rekor v2, verifies the bundle against DIR/trust_config.json, and
checks that a tampered bundle and a wrong identity both fail. Exits non-zero on any failure.
Run: sigstore_local_check.py DIR
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
import urllib.request
import warnings
from pathlib import Path

from sigstore.dsse import Statement
from sigstore.errors import VerificationError
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify import Verifier, policy

SUBJECT = "kaizen-ci@example.com"

# Fulcio's ephemeral CA names its country "USA"; cryptography warns that it is not 2 letters.
warnings.filterwarnings("ignore", message="Attribute's length must be")


def _env(d: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in (d / "env").read_text().splitlines() if "=" in line and not line.startswith("#")
    )


def main() -> int:
    d = Path(sys.argv[1])
    env = _env(d)
    cfg = ClientTrustConfig.from_json((d / "trust_config.json").read_text())
    with urllib.request.urlopen(f"{env['OIDC_URL']}/token?sub={SUBJECT}", timeout=10) as r:
        token = IdentityToken(r.read().decode())

    artifact = b"kaizen audit record\n"
    statement = Statement(
        json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "audit.jsonl", "digest": {"sha256": hashlib.sha256(artifact).hexdigest()}}],
                "predicateType": "https://kaizen.example/audit/v1",
                "predicate": {"run": "sigstore-local-check"},
            }
        ).encode()
    )
    t0 = time.monotonic()
    ctx = SigningContext.from_trust_config(cfg)
    with ctx.signer(token) as signer:
        bundle = signer.sign_dsse(statement)
    print(f"signed in {time.monotonic() - t0:.2f} s")
    (d / "check.sigstore.json").write_text(bundle.to_json())

    verifier = Verifier(trusted_root=cfg.trusted_root)
    ident = policy.Identity(identity=SUBJECT, issuer=env["OIDC_ISSUER"])
    ptype, payload = verifier.verify_dsse(Bundle.from_json(bundle.to_json()), ident)
    assert ptype == "application/vnd.in-toto+json", ptype
    assert json.loads(payload)["predicate"] == {"run": "sigstore-local-check"}
    print("verified: OK")

    # Tampered payload: change the predicate inside the DSSE envelope.
    raw = json.loads(bundle.to_json())
    body = json.loads(base64.b64decode(raw["dsseEnvelope"]["payload"]))
    body["predicate"]["run"] = "tampered"
    raw["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
    failures = 0
    for what, b, pol in (
        ("tampered bundle", Bundle.from_json(json.dumps(raw)), ident),
        (
            "wrong identity",
            Bundle.from_json(bundle.to_json()),
            policy.Identity(identity="someone-else@example.com", issuer=env["OIDC_ISSUER"]),
        ),
    ):
        try:
            verifier.verify_dsse(b, pol)
        except VerificationError as e:
            print(f"{what}: rejected as expected ({e})")
        else:
            print(f"{what}: VERIFIED, which is wrong")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
