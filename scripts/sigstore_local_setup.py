"""Helpers for scripts/sigstore-local.sh: free ports, key material, and the ClientTrustConfig.

ports N              print N free 127.0.0.1 TCP ports
keys DIR             make DIR/ct.key (EC P-256, SEC1: TesseraCT) and DIR/rekor.key (EC P-256, PKCS#8)
trust-config DIR     write DIR/trust_config.json from DIR/env and the PEMs fetched into DIR
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

OPERATOR = "kaizen-local"


def ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    out = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return out


def keys(d: Path) -> None:
    for name, fmt in (
        ("ct.key", serialization.PrivateFormat.TraditionalOpenSSL),
        ("rekor.key", serialization.PrivateFormat.PKCS8),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        p = d / name
        p.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
        p.chmod(0o600)


def _env(d: Path) -> dict[str, str]:
    out = {}
    for line in (d / "env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.removeprefix("export ").strip()] = v.strip().strip("'\"")
    return out


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _pub(keyfile: Path, start: str) -> tuple[dict, dict]:
    key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pk = {"rawBytes": _b64(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}}
    return pk, {"keyId": _b64(hashlib.sha256(der).digest())}


def _chain(pem: Path) -> dict:
    certs = x509.load_pem_x509_certificates(pem.read_bytes())
    return {"certificates": [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in certs]}


def trust_config(d: Path) -> None:
    env = _env(d)
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    valid = {"start": start}
    ct_pk, ct_id = _pub(d / "ct.key", start)
    rk_pk, rk_id = _pub(d / "rekor.key", start)
    trusted_root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": env["REKOR_URL"], "hashAlgorithm": "SHA2_256", "publicKey": rk_pk, "logId": rk_id}],
        "certificateAuthorities": [
            {
                "subject": {"organization": "sigstore", "commonName": "kaizen-local fulcio"},
                "uri": env["FULCIO_URL"],
                "certChain": _chain(d / "fulcio-chain.pem"),
                "validFor": valid,
            }
        ],
        "ctlogs": [{"baseUrl": env["CT_URL"], "hashAlgorithm": "SHA2_256", "publicKey": ct_pk, "logId": ct_id}],
        "timestampAuthorities": [
            {
                "subject": {"organization": "sigstore", "commonName": "kaizen-local tsa"},
                "uri": env["TSA_URL"],
                "certChain": _chain(d / "tsa-chain.pem"),
                "validFor": valid,
            }
        ],
    }

    def svc(url: str, major: int) -> dict:
        return {"url": url, "majorApiVersion": major, "validFor": valid, "operator": OPERATOR}

    signing_config = {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [svc(env["FULCIO_URL"], 1)],
        "oidcUrls": [svc(env["OIDC_URL"], 1)],
        "rekorTlogUrls": [svc(env["REKOR_URL"], 2)],
        "tsaUrls": [svc(env["TSA_URL"] + "/api/v1/timestamp", 1)],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
    cfg = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": trusted_root,
        "signingConfig": signing_config,
    }
    (d / "trust_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def main(argv: list[str]) -> None:
    cmd, arg = argv[1], argv[2]
    if cmd == "ports":
        print(" ".join(map(str, ports(int(arg)))))
    elif cmd == "keys":
        keys(Path(arg))
    elif cmd == "trust-config":
        trust_config(Path(arg))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
