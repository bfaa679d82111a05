"""The GitHub comment client against a real HTTP server on loopback, `kaizen ci changed` on a real
git repository, and preview config rendering."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from model_packages.ci import github, stacks
from model_packages.cli import app
from tests.support import ROOT


class FakeGitHub:
    """Issue comments and pull requests of one repository, served over real HTTP."""

    def __init__(self) -> None:
        self.comments: dict[int, list[dict[str, Any]]] = {7: [{"id": i, "body": f"human {i}"} for i in range(130)]}
        self.open_prs = list(range(1, 205))
        self.calls: list[tuple[str, str]] = []
        self.next_id = 1000


@pytest.fixture
def fake_github() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _page(self, items: list[Any]) -> None:
            from urllib.parse import parse_qs, urlparse

            query = parse_qs(urlparse(self.path).query)
            size, page = int(query["per_page"][0]), int(query["page"][0])
            self._send(200, items[(page - 1) * size : page * size])

        def do_GET(self) -> None:
            state.calls.append(("GET", self.path))
            assert self.headers["Authorization"] == "Bearer t0ken"
            if self.path.startswith("/repos/o/r/issues/7/comments"):
                return self._page(state.comments[7])
            if self.path.startswith("/repos/o/r/pulls?state=open"):
                return self._page([{"number": n} for n in state.open_prs])
            self._send(404, {"message": "Not Found"})

        def _body(self) -> dict[str, Any]:
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def do_POST(self) -> None:
            state.calls.append(("POST", self.path))
            body = self._body()
            if len(body["body"]) > github.COMMENT_LIMIT:
                return self._send(422, {"message": "body is too long (maximum is 65536 characters)"})
            state.next_id += 1
            state.comments[7].append({"id": state.next_id, "body": body["body"]})
            self._send(201, {"id": state.next_id})

        def do_PATCH(self) -> None:
            state.calls.append(("PATCH", self.path))
            number = int(self.path.rsplit("/", 1)[1])
            for comment in state.comments[7]:
                if comment["id"] == number:
                    comment["body"] = self._body()["body"]
                    return self._send(200, comment)
            self._send(404, {"message": "Not Found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_one_comment_per_pull_request_updated_in_place(fake_github: tuple[FakeGitHub, str]) -> None:
    state, url = fake_github
    client = github.GitHub("o/r", token="t0ken", api_url=url)
    first = github.render_comment(7, {"endpointUrl": "http://127.0.0.1:1", "image": "r/m@sha256:" + "a" * 64},
                                  {"pulumi preview": "+ 3 to create"})
    assert client.upsert_comment(7, first)[0] == "created"
    huge = github.render_comment(7, {"image": "r/m@sha256:" + "b" * 64}, {"pulumi preview": "x" * 200_000})
    action, number = client.upsert_comment(7, huge)
    assert action == "updated"
    ours = [c for c in state.comments[7] if c["body"].startswith(github.MARKER)]
    assert len(ours) == 1 and ours[0]["id"] == number
    assert len(ours[0]["body"]) == github.COMMENT_LIMIT and "trimmed" in ours[0]["body"]
    assert "b" * 64 in ours[0]["body"]
    assert next(c for c in state.comments[7] if not c["body"].startswith(github.MARKER))["body"] == "human 0"


def test_one_comment_per_preview_stack_when_a_matrix_comments(fake_github: tuple[FakeGitHub, str]) -> None:
    """Matrix jobs (packages x clouds) each keep their own comment, updated in place, instead of
    overwriting one another's."""
    state, url = fake_github
    client = github.GitHub("o/r", token="t0ken", api_url=url)
    numbers = {}
    for round_ in ("1", "2"):
        for stack in ("aws/models/a", "gcp/models/a", "aws/models/b"):
            body = github.render_comment(7, {"image": "r/m@sha256:" + round_ * 64}, {}, stack=stack)
            action, number = client.upsert_comment(7, body, key=stack)
            assert action == ("created" if round_ == "1" else "updated")
            assert numbers.setdefault(stack, number) == number
    ours = [c for c in state.comments[7] if c["body"].startswith("<!-- kaizen-preview ")]
    assert len(ours) == 3 and all("2" * 64 in c["body"] for c in ours)
    assert sorted(c["body"].split("\n", 2)[1] for c in ours) == [
        "### Kaizen preview of #7: `aws/models/a`", "### Kaizen preview of #7: `aws/models/b`",
        "### Kaizen preview of #7: `gcp/models/a`"]


def test_open_pull_requests_follow_every_page(fake_github: tuple[FakeGitHub, str]) -> None:
    state, url = fake_github
    assert github.GitHub("o/r", token="t0ken", api_url=url).open_pull_requests() == state.open_prs
    assert sum(1 for c in state.calls if "/pulls" in c[1]) == 3


def test_github_errors_name_the_call(fake_github: tuple[FakeGitHub, str]) -> None:
    _, url = fake_github
    with pytest.raises(github.GitHubError, match=r"GET /repos/o/r/issues/8/comments.*404"):
        github.GitHub("o/r", token="t0ken", api_url=url).upsert_comment(8, "hello")
    with pytest.raises(github.GitHubError, match="OWNER/NAME"):
        github.GitHub("just-a-name")


def test_changed_lists_the_packages_a_branch_touches(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    for name in ("models/a", "models/b"):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "kaizen.yaml").write_text("name: x\n")
    (tmp_path / "README.md").write_text("hi\n")
    git("init", "-q", "-b", "main")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    git("checkout", "-qb", "change")
    (tmp_path / "models/b/data/new.csv").write_text("1\n")
    (tmp_path / "README.md").write_text("changed\n")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "change")
    result = CliRunner().invoke(app, ["ci", "changed", "--base", "main", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ["models/b"]


def test_preview_configs_come_from_the_templates(tmp_path: Path) -> None:
    project_dir = tmp_path / "project"
    (project_dir / "stacks" / "templates").mkdir(parents=True)
    (project_dir / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for target in ("local", "aws"):
        template = ROOT / "stacks" / "templates" / f"Pulumi.pr.{target}.yaml"
        (project_dir / "stacks" / "templates" / template.name).write_text(template.read_text())
    project = stacks.Project(project_dir)
    local = yaml.safe_load(stacks.write_preview_config(project, "local", 417).read_text())["config"]
    assert local["kaizen:local"]["endpointPort"] == 20000 + 17 * 10 + 2
    assert "__" not in json.dumps(local)
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris@sha256:" + "c" * 64
    aws = stacks.write_preview_config(project, "aws", 5, image=image)
    assert aws.name == "Pulumi.aws-pr-5.yaml"
    assert yaml.safe_load(aws.read_text())["config"]["kaizen:image"] == image
    with pytest.raises(stacks.StackError, match="not pinned by digest"):
        stacks.write_preview_config(project, "aws", 6, image="r/kaizen/iris:latest")
    with pytest.raises(stacks.StackError, match="target 'k8s'"):
        stacks.preview_stack_name("k8s", 1)
