"""`kaizen retrain-blob` against Azurite (Microsoft's Blob Storage emulator, from npm) with OAuth
on, over HTTPS: the job's bearer token from the (local) managed identity endpoint, the data and the
champion staged from Azurite, the gate report and the run's audit trail uploaded to it, and the
trail verified from what Azurite holds. Skipped where Azurite is not installed
(`npm install azurite` into ~/.cache/kaizen/azurite, or `azurite-blob` on PATH)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_packages.azure_blob import BlobClient, BlobError
from tests.retrain import test_blob
from tests.retrain.test_blob import AUDIT, FakeAzure, azure, uploaded_trail  # noqa: F401 (the fixture)
from tests.support import free_port, unavailable

ACCOUNT = "devstoreaccount1"


def _azurite() -> str | None:
    local = Path.home() / ".cache" / "kaizen" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return shutil.which("azurite-blob") or (str(local) if local.exists() else None)


def _self_signed(where: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _token() -> str:
    """An Entra ID-shaped access token for Blob Storage (Azurite's basic OAuth checks audience,
    issuer and lifetime, not the signature)."""
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now, tenant = int(time.time()), "ab1f708d-50f6-404c-a006-d71b2ac7a606"
    return ".".join([part({"alg": "RS256", "typ": "JWT"}), part({
        "aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{tenant}/", "tid": tenant,
        "oid": "00000000-0000-0000-0000-00000000cafe", "iat": now - 60, "nbf": now - 60, "exp": now + 3600}), "c2ln"])


@pytest.fixture
def azurite(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Azurite's blob service on a free loopback port, HTTPS with a throwaway certificate, OAuth on;
    yields the account URL."""
    binary = _azurite()
    if binary is None:
        unavailable("Azurite is not installed (npm install azurite)",
                    ci="Azurite is not installed in CI (scripts/setup.sh installs it)")
    where = tmp_path_factory.mktemp("azurite")
    cert, key = _self_signed(where)
    port = free_port()
    log = (where / "azurite.log").open("wb")
    process = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--oauth", "basic",
         "--cert", str(cert), "--key", str(key), "--disableTelemetry", "--silent"],
        cwd=where, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (where / "azurite.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Azurite did not listen in 60 s"
                time.sleep(0.2)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # urllib trusts the throwaway certificate only
        yield f"https://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_retrain_blob_on_azurite_uploads_the_report_and_a_verifiable_audit_trail(
        azurite: str, azure: FakeAzure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from model_packages.retrain.__main__ import app
    from tests.retrain.test_pipeline import CHAMPION, PIPELINE, _iris_csv

    token = _token()
    monkeypatch.setattr(test_blob, "TOKEN", token)  # what the local identity endpoint hands out
    store = BlobClient(azurite, token)
    for container in ("train", "pkgs"):
        store._request("PUT", store._url(container, restype="container")).close()
    store.upload("train", "iris/latest.csv", _iris_csv(tmp_path / "same.csv"))
    for path in sorted(CHAMPION.rglob("*")):
        if path.is_file():
            store.upload("pkgs", f"store/iris/1.0.0/{path.relative_to(CHAMPION).as_posix()}", path)
    with pytest.raises(BlobError, match="HTTP 403 AuthenticationFailed"):  # Azurite checks the token
        BlobClient(azurite, "not-a-token").download("train", "iris/latest.csv", tmp_path / "x")

    monkeypatch.delenv("KAIZEN_AUDIT_TRAIL", raising=False)  # the job's own trail, as in a replica
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "replica" / "key.pem"))
    env = {**test_blob._env(azure), "KAIZEN_BLOB_ACCOUNT_URL": azurite, "KAIZEN_PIPELINE": str(PIPELINE)}
    result = CliRunner().invoke(app, ["retrain-blob"], env=env)
    assert result.exit_code == 0, result.output
    assert "KAIZEN_AUDIT_TRAIL" not in os.environ

    names = sorted(store.list("pkgs", "store/"))
    assert "store/candidates/gate-report.md" in names
    assert not [n for n in names if n.startswith("store/candidates/") and n.endswith("kaizen.yaml")]
    blobs: dict[tuple[str, str], bytes] = {}
    for name in names:
        if name.startswith(AUDIT):
            store.download("pkgs", name, tmp_path / "dl" / name)
            blobs[("pkgs", name)] = (tmp_path / "dl" / name).read_bytes()
    assert sorted(n for _, n in blobs) == [f"{AUDIT}anchor.json", f"{AUDIT}audit-key.pub", f"{AUDIT}audit.jsonl"]
    records = uploaded_trail(blobs, "pkgs", AUDIT, tmp_path, monkeypatch)
    (gate,) = [r for r in records if r["event"] == "gate"]
    assert gate["promote"] is False and gate["champion"] == "iris-classifier 1.0.0"
