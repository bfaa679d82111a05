"""The few GitHub REST calls continuous deployment needs: one preview comment per pull request
(updated in place, trimmed to GitHub's 65,536-character limit) and the open pull requests.

The API root is `$GITHUB_API_URL` (GitHub Enterprise, or a test server), the token `$GITHUB_TOKEN`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from model_packages import stack_outputs as out
from model_packages.errors import KaizenError

MARKER = "<!-- kaizen-preview -->"
COMMENT_LIMIT = 65_536  # characters, GitHub's maximum body of an issue comment
_TRIMMED = "\n\n… (trimmed to GitHub's comment limit; the full text is in the workflow log)"


class GitHubError(KaizenError):
    """A GitHub API call failed."""


def trim(body: str, limit: int = COMMENT_LIMIT) -> str:
    """`body` cut so that it, with a note saying so, fits in `limit` characters."""
    if len(body) <= limit:
        return body
    return body[: limit - len(_TRIMMED)] + _TRIMMED


def marker(key: str | None = None) -> str:
    """The first line of a Kaizen comment: one comment per pull request, or per `key` (a stack)."""
    return MARKER if not key else f"<!-- kaizen-preview {key} -->"


def render_comment(pr: int, outputs: Mapping[str, Any], sections: Mapping[str, str], *,
                   stack: str | None = None) -> str:
    """The preview comment: endpoint and image digest, then each report (gate, drift, `pulumi preview`)."""
    title = f"### Kaizen preview of #{pr}" + (f": `{stack}`" if stack else "")
    lines = [marker(stack), title, "", "| output | value |", "| --- | --- |"]
    for key in (out.ENDPOINT_URL, out.IMAGE, out.IMAGE_DIGEST, out.MODEL_VERSION, out.DASHBOARD):
        if key in outputs:
            lines.append(f"| {key} | `{outputs[key]}` |")
    for title, text in sections.items():
        lines += ["", f"<details><summary>{title}</summary>", "", "```", text.strip(), "```", "", "</details>"]
    return trim("\n".join(lines) + "\n")


class GitHub:
    def __init__(self, repository: str, token: str | None = None, api_url: str | None = None) -> None:
        if repository.count("/") != 1:
            raise GitHubError(f"repository {repository!r} is not OWNER/NAME")
        self.repository = repository
        self.token = token if token is not None else os.environ.get("GITHUB_TOKEN", "")
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.api_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read()[:500].decode(errors="replace")
            raise GitHubError(f"GitHub {method} {path}: {err.code} {detail}") from None
        except OSError as err:
            raise GitHubError(f"GitHub {method} {path}: {err}") from None

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            sep = "&" if "?" in path else "?"
            items = self._call("GET", f"{path}{sep}per_page=100&page={page}")
            if not isinstance(items, list):
                raise GitHubError(f"GitHub GET {path}: expected a list")
            yield from items
            if len(items) < 100:
                return
            page += 1

    def upsert_comment(self, pr: int, body: str, key: str | None = None) -> tuple[str, int]:
        """Update the pull request's Kaizen comment (the one whose first line is the marker of `key`)
        or add it."""
        first = marker(key)
        if body.split("\n", 1)[0] != first:
            body = f"{first}\n{body}"
        body = trim(body)
        for comment in self._pages(f"/repos/{self.repository}/issues/{pr}/comments"):
            if str(comment.get("body", "")).split("\n", 1)[0] == first:
                self._call("PATCH", f"/repos/{self.repository}/issues/comments/{comment['id']}", {"body": body})
                return "updated", int(comment["id"])
        created = self._call("POST", f"/repos/{self.repository}/issues/{pr}/comments", {"body": body})
        return "created", int(created["id"])

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> int:
        """Open a pull request of branch `head` into `base`, or return the one already open for `head`."""
        owner = self.repository.split("/")[0]
        existing = self._call("GET", f"/repos/{self.repository}/pulls?state=open&head={owner}:{head}")
        if isinstance(existing, list) and existing:
            return int(existing[0]["number"])
        created = self._call("POST", f"/repos/{self.repository}/pulls",
                             {"head": head, "base": base, "title": title, "body": trim(body)})
        return int(created["number"])

    def dispatch_workflow(self, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Start `workflow` (file name) on branch `ref` with `inputs` (workflow_dispatch). A pull
        request opened with the job's GITHUB_TOKEN starts no `pull_request` workflow (GitHub's
        rule), but a workflow_dispatch sent with that token does start one."""
        self._call("POST", f"/repos/{self.repository}/actions/workflows/{workflow}/dispatches",
                   {"ref": ref, "inputs": inputs})

    def open_pull_requests(self) -> list[int]:
        return sorted(int(p["number"]) for p in self._pages(f"/repos/{self.repository}/pulls?state=open"))

