"""Turn a retrained package into a pull request: the new version replaces the package directory
on a branch `kaizen/retrain-<name>-<version>`, pushed to `origin`, with the gate report, the drift
report and the model card diff as the pull request's body. Merging it is the approval; the main
workflow then deploys it like any other change."""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

from model_packages.ci.github import GitHub
from model_packages.errors import KaizenError
from model_packages.manifest import read_manifest


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise KaizenError(f"git {' '.join(args)}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def propose(repo: Path, candidate: Path, package: Path, github: GitHub, *, base: str = "main",
            reports: dict[str, Path] | None = None) -> tuple[str, int]:
    """Branch, commit, push and open the pull request; (branch, pull request number)."""
    new = read_manifest(candidate)
    branch = f"kaizen/retrain-{new.name}-{new.version}"
    _git(repo, "checkout", "-q", "-B", branch, base)  # always from the base: a re-run rebuilds the branch
    target = repo / package
    old = read_manifest(target)
    if new.name != old.name:
        raise KaizenError(f"the candidate is {new.name}, but {package} holds {old.name}")
    if new.version == old.version:
        raise KaizenError(f"{package} already holds {new.name} {new.version}: nothing to propose")
    old_card = (target / "model-card.md").read_text() if (target / "model-card.md").is_file() else ""
    for item in target.iterdir():
        if item.is_file():
            item.unlink()
    for item in candidate.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    _git(repo, "add", "--all", str(package))
    _git(repo, "-c", "user.name=kaizen-retrain", "-c", "user.email=kaizen-retrain@users.noreply.github.com",
         "commit", "-q", "-m", f"Retrain {new.name} {old.version} -> {new.version}")
    _git(repo, "push", "--force", "origin", f"{branch}:{branch}")
    new_card = (target / "model-card.md").read_text() if (target / "model-card.md").is_file() else ""
    body = [f"Retrained **{new.name}** {old.version} -> {new.version} by the retraining pipeline.", ""]
    for title, path in (reports or {}).items():
        if path.is_file():
            body += [f"<details><summary>{title}</summary>", "", path.read_text(), "</details>", ""]
    diff = "".join(difflib.unified_diff(old_card.splitlines(True), new_card.splitlines(True),
                                        "model-card.md (before)", "model-card.md (after)"))
    body += ["<details><summary>model card diff</summary>", "", "```diff", diff or "(no card before)", "```",
             "</details>"]
    number = github.open_pull_request(branch, base, f"Retrain {new.name} {new.version}", "\n".join(body))
    return branch, number
