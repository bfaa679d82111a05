"""`kaizen ci propose`: a retrained package becomes a branch pushed to a real git remote and one
pull request (created once, found again on a second run) on a GitHub API served on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from model_packages.cli import app
from tests.support import ROOT

Pulls = tuple[list[dict[str, Any]], str, list[dict[str, Any]]]


@pytest.fixture
def pulls() -> Iterator[Pulls]:
    opened: list[dict[str, Any]] = []
    dispatched: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            head = self.path.split("head=", 1)[1] if "head=" in self.path else ""
            self._send(200, [p for p in opened if f"o:{p['head']}" == head])

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.endswith("/dispatches"):  # workflow_dispatch answers 204, no body
                dispatched.append({"path": self.path, **body})
                self.send_response(204)
                self.end_headers()
                return
            opened.append({**body, "number": 100 + len(opened)})
            self._send(201, opened[-1])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield opened, f"http://127.0.0.1:{server.server_address[1]}", dispatched
    finally:
        server.shutdown()
        server.server_close()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_a_candidate_becomes_one_pull_request_with_the_gate_report(
    tmp_path: Path, pulls: Pulls
) -> None:
    opened, api, dispatched = pulls
    origin, repo = tmp_path / "origin.git", tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True, capture_output=True)
    shutil.copytree(ROOT / "examples" / "iris-classifier", repo / "models" / "iris")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v1")
    _git(repo, "push", "-q", "origin", "HEAD:main")
    candidate = tmp_path / "candidate"
    shutil.copytree(ROOT / "examples" / "iris-classifier", candidate)
    manifest = candidate / "kaizen.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.0.1", 1))
    (candidate / "model-card.md").write_text("# iris-classifier 1.0.1\n- gate: promoted\n")
    (tmp_path / "gate.md").write_text("# Promotion gate: PROMOTE\n")
    retrained = tmp_path / "retrain.json"
    retrained.write_text(json.dumps({"promoted": True, "package": str(candidate)}))
    args = ["ci", "propose", "--from-retrain", str(retrained), "--package", "models/iris", "--repository", "o/r",
            "--repo", str(repo), "--report", f"gate report={tmp_path / 'gate.md'}",
            "--report", f"drift report={tmp_path / 'drift.md'}", "--dispatch", "kaizen-pull-request.yaml"]
    (tmp_path / "drift.md").write_text("# Drift: petal_length PSI 0.31\n")
    env = {"GITHUB_API_URL": api, "GITHUB_TOKEN": "t"}
    first = CliRunner().invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"proposed": True, "branch": "kaizen/retrain-iris-classifier-1.0.1",
                                        "pull_request": 100, "dispatched": "kaizen-pull-request.yaml"}
    # The pull request workflow is started explicitly on the branch, with the number it names the stack by.
    assert dispatched == [{"path": "/repos/o/r/actions/workflows/kaizen-pull-request.yaml/dispatches",
                           "ref": "kaizen/retrain-iris-classifier-1.0.1", "inputs": {"pr": "100", "base": "main"}}]
    pushed = _git(origin, "show", "kaizen/retrain-iris-classifier-1.0.1:models/iris/kaizen.yaml")
    assert "version: 1.0.1" in pushed
    assert "version: 1.0.0" in _git(origin, "show", "main:models/iris/kaizen.yaml")  # main is untouched
    assert opened[0]["base"] == "main" and "Promotion gate: PROMOTE" in opened[0]["body"]
    assert "+- gate: promoted" in opened[0]["body"]  # the model card diff
    assert "Drift: petal_length PSI 0.31" in opened[0]["body"]
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 0 and json.loads(again.stdout)["pull_request"] == 100 and len(opened) == 1

    retrained.write_text(json.dumps({"promoted": False, "package": None}))
    rejected = CliRunner().invoke(app, args, env=env)
    assert rejected.exit_code == 0 and json.loads(rejected.stdout)["proposed"] is False and len(opened) == 1
