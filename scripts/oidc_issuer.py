"""Minimal OIDC issuer on 127.0.0.1: the stand-in for a CI identity provider (GitHub's token service).

Serves /.well-known/openid-configuration and /jwks for Fulcio, and mints RS256 ID tokens (audience
"sigstore") at GET /token?sub=SUBJECT. The subject is also the token's verified email, so Fulcio
(issuer type "email") puts it in the certificate's SAN. GET /github?audience=AUD answers like GitHub
Actions' token service ({"value": token}, bearer auth), so a client's ambient-credential detection
runs for real. Run: oidc_issuer.py --port N --key KEY.pem
(the key, an RSA private key in PEM, is made if missing).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "kaizen-local"
DEFAULT_SUBJECT = "kaizen-ci@example.com"


def _b64u_int(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """Load the signing key, making it first if `path` does not exist."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def mint(key: rsa.RSAPrivateKey, issuer: str, subject: str, audience: str, ttl: int = 600) -> str:
    """An ID token for `subject`, valid for `ttl` seconds."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "email": subject,
        "email_verified": True,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


def make_handler(key: rsa.RSAPrivateKey, issuer: str) -> type[BaseHTTPRequestHandler]:
    pub = key.public_key().public_numbers()
    jwks = {
        "keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID, "n": _b64u_int(pub.n), "e": _b64u_int(pub.e)}]
    }
    discovery = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "token_endpoint": f"{issuer}/token",
        "authorization_endpoint": f"{issuer}/authorize",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "aud", "iss", "iat", "exp", "email", "email_verified"],
    }

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._send(json.dumps(discovery).encode(), "application/json")
            elif url.path == "/jwks":
                self._send(json.dumps(jwks).encode(), "application/json")
            elif url.path == "/token":
                q = parse_qs(url.query)
                sub = q.get("sub", [DEFAULT_SUBJECT])[0]
                aud = q.get("aud", ["sigstore"])[0]
                self._send(mint(key, issuer, sub, aud).encode(), "text/plain")
            elif url.path == "/github":  # GitHub Actions' token request (ACTIONS_ID_TOKEN_REQUEST_URL)
                if not self.headers.get("Authorization", "").lower().startswith("bearer "):
                    self._send(b"missing bearer token\n", "text/plain", 401)
                    return
                aud = parse_qs(url.query).get("audience", ["sigstore"])[0]
                self._send(json.dumps({"value": mint(key, issuer, DEFAULT_SUBJECT, aud)}).encode(), "application/json")
            else:
                self._send(b"not found\n", "text/plain", 404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", type=Path, required=True)
    args = ap.parse_args()
    issuer = f"http://127.0.0.1:{args.port}"
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(load_key(args.key), issuer))
    server.serve_forever()


if __name__ == "__main__":
    main()
