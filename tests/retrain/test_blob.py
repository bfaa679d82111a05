"""`kaizen retrain-blob` (the Azure retraining job's entry point) against a real HTTP server on
127.0.0.1 speaking the subset of the Blob REST API and the Container Apps identity endpoint it uses:
bearer token from the identity, data and champion staged, result uploaded under candidates/."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from model_packages.azure_blob import BlobClient, BlobError, identity_token
from model_packages.retrain.blob import stage_and_run

TOKEN, HEADER, CLIENT = "tok-123", "hdr-456", "client-789"


class FakeAzure(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.token_queries: list[dict[str, list[str]]] = []
        self.page_size = 2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    @property
    def azure(self) -> FakeAzure:
        assert isinstance(self.server, FakeAzure)
        return self.server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", error: str = "") -> None:
        self.send_response(code)
        if error:
            self.send_header("x-ms-error-code", error)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}" or not self.headers.get("x-ms-version"):
            self._send(403, error="AuthorizationFailure")
            return False
        return True

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/identity":
            self.azure.token_queries.append(query)
            if self.headers.get("X-IDENTITY-HEADER") != HEADER:
                self._send(401)
                return
            self._send(200, json.dumps({"access_token": TOKEN}).encode())
            return
        if not self._authorised():
            return
        container, _, blob = urllib.parse.unquote(url.path).lstrip("/").partition("/")
        if query.get("comp") == ["list"]:
            prefix = query.get("prefix", [""])[0]
            names = sorted(b for c, b in self.azure.blobs if c == container and b.startswith(prefix))
            start = int(query.get("marker", ["0"])[0])
            page = names[start:start + self.azure.page_size]
            more = start + self.azure.page_size < len(names)
            body = ("<EnumerationResults><Blobs>" + "".join(f"<Blob><Name>{escape(n)}</Name></Blob>" for n in page)
                    + f"</Blobs><NextMarker>{start + self.azure.page_size if more else ''}</NextMarker>"
                    "</EnumerationResults>")
            self._send(200, body.encode())
            return
        if (container, blob) not in self.azure.blobs:
            self._send(404, error="BlobNotFound")
            return
        self._send(200, self.azure.blobs[(container, blob)])

    def do_PUT(self) -> None:
        if not self._authorised():
            return
        if self.headers.get("x-ms-blob-type") != "BlockBlob":
            self._send(400, error="MissingRequiredHeader")
            return
        container, _, blob = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/").partition("/")
        self.azure.blobs[(container, blob)] = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(201)


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    server = FakeAzure()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _env(server: FakeAzure) -> dict[str, str]:
    return {"IDENTITY_ENDPOINT": f"{server.url}/identity", "IDENTITY_HEADER": HEADER, "AZURE_CLIENT_ID": CLIENT,
            "KAIZEN_BLOB_ACCOUNT_URL": server.url, "KAIZEN_DATA_CONTAINER": "train",
            "KAIZEN_DATA_BLOB": "iris/latest.csv", "KAIZEN_PACKAGES_CONTAINER": "pkgs",
            "KAIZEN_CHAMPION_PREFIX": "store/iris/1.0.0/", "KAIZEN_CANDIDATES_PREFIX": "store/candidates/",
            "KAIZEN_PIPELINE": "/opt/kaizen/pipeline.py", "CONTAINER_APP_JOB_EXECUTION_NAME": EXECUTION}


EXECUTION = "kz-iris-retrain-x1y2z"
AUDIT = f"store/audit/{EXECUTION}/"


@pytest.fixture
def own_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own audit trail and signing key (the job's are fresh in each replica)."""
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "trail" / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "trail" / "key.pem"))
    monkeypatch.delenv("KAIZEN_AUDIT_PUBKEYS", raising=False)
    return tmp_path / "trail" / "audit.jsonl"


def uploaded_trail(blobs: dict[tuple[str, str], bytes], container: str, prefix: str, tmp: Path,
                   monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The uploaded trail, verified elsewhere with only what was uploaded beside it: its key and anchor."""
    from model_packages.audit import trail

    where = tmp / "verifier"
    where.mkdir()
    for name in ("audit.jsonl", "audit-key.pub", "anchor.json"):
        (where / name).write_bytes(blobs[(container, prefix + name)])
    monkeypatch.setenv("KAIZEN_AUDIT_PUBKEYS", str(where / "audit-key.pub"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(where / "no-such-key.pem"))
    anchor = json.loads((where / "anchor.json").read_text())
    records = trail.verify(where / "audit.jsonl", anchor)
    assert anchor["seq"] == len(records) > 0
    return records


def test_stages_data_and_champion_runs_and_uploads_the_result(azure: FakeAzure, tmp_path: Path, own_trail: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    azure.blobs = {("train", "iris/latest.csv"): b"a,b\n1,2\n",
                   ("pkgs", "store/iris/1.0.0/kaizen.yaml"): b"name: iris\n",
                   ("pkgs", "store/iris/1.0.0/model/model.skops"): b"\x00model",
                   ("pkgs", "store/iris/1.0.0/schema.json"): b"{}",
                   ("pkgs", "store/iris/0.9.0/kaizen.yaml"): b"old"}  # not the champion: not staged
    seen: dict[str, Any] = {}

    def run(pipeline: Path, data: Path, champion: Path, out: Path) -> None:
        seen.update(pipeline=pipeline, data=data.read_bytes(),
                    champion=sorted(p.relative_to(champion).as_posix() for p in champion.rglob("*") if p.is_file()))
        (out / "iris" / "1.1.0").mkdir(parents=True)
        (out / "iris" / "1.1.0" / "kaizen.yaml").write_text("name: iris\nversion: 1.1.0\n")
        (out / "gate-report.md").write_text("promoted")
        from model_packages.audit import trail

        trail.append("gate", decision="promote", candidate="1.1.0")

    uploaded = stage_and_run(_env(azure), tmp_path, run)
    assert seen == {"pipeline": Path("/opt/kaizen/pipeline.py"), "data": b"a,b\n1,2\n",
                    "champion": ["kaizen.yaml", "model/model.skops", "schema.json"]}
    assert uploaded == ["store/candidates/gate-report.md", "store/candidates/iris/1.1.0/kaizen.yaml",
                        f"{AUDIT}audit.jsonl", f"{AUDIT}audit-key.pub", f"{AUDIT}anchor.json"]
    assert azure.blobs[("pkgs", f"{AUDIT}audit.jsonl")] == own_trail.read_bytes()
    (record,) = uploaded_trail(azure.blobs, "pkgs", AUDIT, tmp_path, monkeypatch)
    assert record["event"] == "gate" and record["decision"] == "promote"
    assert azure.blobs[("pkgs", "store/candidates/iris/1.1.0/kaizen.yaml")] == b"name: iris\nversion: 1.1.0\n"
    assert azure.blobs[("pkgs", "store/candidates/gate-report.md")] == b"promoted"
    # the token is the job's user-assigned identity's, for Blob Storage
    (query,) = azure.token_queries
    assert query == {"resource": ["https://storage.azure.com/"], "api-version": ["2019-08-01"], "client_id": [CLIENT]}


def test_a_failed_run_uploads_no_candidate_but_its_audit_records(azure: FakeAzure, tmp_path: Path, own_trail: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    azure.blobs = {("train", "iris/latest.csv"): b"x", ("pkgs", "store/iris/1.0.0/kaizen.yaml"): b"y"}

    def run(_p: Path, _d: Path, _c: Path, out: Path) -> None:
        from model_packages.audit import trail

        (out / "partial").write_text("half")
        trail.append("retrain_run", status="started")
        raise BlobError("schema check failed")

    env = {**_env(azure), "KAIZEN_AUDIT_CONTAINER": "audit", "KAIZEN_AUDIT_PREFIX": "kaizen/"}
    with pytest.raises(BlobError, match="schema check failed"):
        stage_and_run(env, tmp_path, run)
    audit = f"kaizen/{EXECUTION}/"
    assert set(azure.blobs) == {("train", "iris/latest.csv"), ("pkgs", "store/iris/1.0.0/kaizen.yaml"),
                                *(("audit", audit + n) for n in ("audit.jsonl", "audit-key.pub", "anchor.json"))}
    (record,) = uploaded_trail(azure.blobs, "audit", audit, tmp_path, monkeypatch)
    assert record["event"] == "retrain_run"


def test_a_trail_that_does_not_verify_is_not_uploaded(azure: FakeAzure, tmp_path: Path, own_trail: Path) -> None:
    from model_packages.audit import trail

    azure.blobs = {("train", "iris/latest.csv"): b"x", ("pkgs", "store/iris/1.0.0/kaizen.yaml"): b"y"}

    def run(_p: Path, _d: Path, _c: Path, out: Path) -> None:
        trail.append("gate", decision="reject")
        trail.append("gate", decision="reject")
        lines = own_trail.read_text().splitlines()
        own_trail.write_text(lines[1] + "\n" + lines[0] + "\n")  # reordered

    with pytest.raises(BlobError, match=r"audit trail does not verify, not uploaded: .*out of sequence"):
        stage_and_run(_env(azure), tmp_path, run)
    assert not [b for c, b in azure.blobs if "audit" in b]


def test_missing_champion_data_or_identity_is_one_clear_error(azure: FakeAzure, tmp_path: Path) -> None:
    def never(*_: Path) -> None:
        raise AssertionError("must not run")

    azure.blobs = {("train", "iris/latest.csv"): b"x"}
    with pytest.raises(BlobError, match=r"the champion pkgs/store/iris/1.0.0/ is empty"):
        stage_and_run(_env(azure), tmp_path / "a", never)
    azure.blobs = {}
    with pytest.raises(BlobError, match=r"GET .*/train/iris/latest.csv: HTTP 404 BlobNotFound"):
        stage_and_run(_env(azure), tmp_path / "b", never)
    with pytest.raises(BlobError, match="no managed identity"):
        identity_token({})
    with pytest.raises(BlobError, match="gave no token"):
        identity_token({**_env(azure), "IDENTITY_HEADER": "wrong"})
    with pytest.raises(BlobError, match=r"missing settings \['KAIZEN_DATA_BLOB'\]"):
        stage_and_run({k: v for k, v in _env(azure).items() if k != "KAIZEN_DATA_BLOB"}, tmp_path / "c", never)
    with pytest.raises(BlobError, match="https only"):
        stage_and_run({**_env(azure), "KAIZEN_BLOB_ACCOUNT_URL": "http://kzdata.blob.core.windows.net"},
                      tmp_path / "d", never)


def test_a_wrong_token_is_refused_and_escaping_blob_names_are_not_written(azure: FakeAzure, tmp_path: Path) -> None:
    azure.blobs = {("train", "iris/latest.csv"): b"x", ("pkgs", "store/iris/1.0.0/../../evil"): b"y"}
    with pytest.raises(BlobError, match="HTTP 403 AuthorizationFailure"):
        BlobClient(azure.url, "stolen").download("train", "iris/latest.csv", tmp_path / "x")

    def never(*_: Path) -> None:
        raise AssertionError("must not run")

    with pytest.raises(BlobError, match=r"does not name a file under 'store/iris/1.0.0/'"):
        stage_and_run(_env(azure), tmp_path / "w", never)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "w" / "evil").exists()


@pytest.mark.parametrize("module", ["model_packages.cli", "model_packages.retrain.__main__"])
def test_the_trainer_and_the_cli_have_the_entry_point_the_job_runs(module: str) -> None:
    import importlib

    from typer.testing import CliRunner

    app = importlib.import_module(module).app  # the trainer image's `kaizen` is model_packages.retrain
    result = CliRunner().invoke(app, ["retrain-blob"], env={"IDENTITY_ENDPOINT": "", "KAIZEN_DATA_BLOB": ""})
    assert result.exit_code == 1
    assert "missing settings" in result.output


def test_the_job_entry_point_retrains_the_example_from_blobs_end_to_end(azure: FakeAzure, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `kaizen retrain-blob` of the trainer's CLI: the iris pipeline on the same data as the
    champion is rejected by the gate (exit 0 with --reject-ok); the report is uploaded, no package."""
    from typer.testing import CliRunner

    from model_packages.retrain.__main__ import app
    from tests.retrain.test_pipeline import CHAMPION, PIPELINE, _iris_csv

    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    azure.blobs = {("train", "iris/latest.csv"): _iris_csv(tmp_path / "same.csv").read_bytes()}
    for path in CHAMPION.rglob("*"):
        if path.is_file():
            azure.blobs[("pkgs", f"store/iris/1.0.0/{path.relative_to(CHAMPION).as_posix()}")] = path.read_bytes()
    result = CliRunner().invoke(app, ["retrain-blob"], env={**_env(azure), "KAIZEN_PIPELINE": str(PIPELINE)})
    assert result.exit_code == 0, result.output
    uploaded = sorted(b for c, b in azure.blobs if c == "pkgs" and b.startswith("store/candidates/"))
    assert "store/candidates/gate-report.md" in uploaded
    assert azure.blobs[("pkgs", "store/candidates/gate-report.md")].decode().startswith("# Promotion gate: REJECT")
    assert not [b for b in uploaded if b.endswith("kaizen.yaml")]  # rejected: no candidate package
    # the job's audit records left the replica, and check out with what was uploaded beside them
    records = uploaded_trail(azure.blobs, "pkgs", AUDIT, tmp_path, monkeypatch)
    (gate,) = [r for r in records if r["event"] == "gate"]
    assert gate["promote"] is False
