"""The GitHub Actions workflows Kaizen ships: linted, and checked for the invariants a later edit
must not drop (pinned actions, OIDC only where needed, never for forks, one concurrency group per
stack that never cancels a running `up`, production behind an environment)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from model_packages.ci import workflows
from model_packages.cli import app

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
TEMPLATES = workflows.templates()
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
STACK_COMMANDS = ("ci deploy", "ci promote", "ci rollback", "ci preview up", "ci preview destroy", "ci cleanup")


def _doc(name: str) -> dict[str, Any]:
    doc = yaml.safe_load(TEMPLATES[name])
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, job_name, job) for name in TEMPLATES for job_name, job in _doc(name)["jobs"].items()]


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job.get("steps", []) if "run" in step]


def _tool(name: str, fallback: Path) -> str:
    found = shutil.which(name) or (str(fallback) if fallback.is_file() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {name} (scripts/setup.sh installs it)")
        pytest.skip(f"{name} is not installed: run scripts/setup.sh")
    return found


def test_the_repository_carries_the_current_workflows() -> None:
    assert set(TEMPLATES) >= {"kaizen-pull-request.yaml", "kaizen-pull-request-closed.yaml", "kaizen-main.yaml",
                              "kaizen-cleanup.yaml", "kaizen-retrain.yaml"}
    assert workflows.install(ROOT, check=True) == [], "run `kaizen init-ci --force` after editing a template"


def test_init_ci_writes_then_keeps_local_edits(tmp_path: Path) -> None:
    assert sorted(workflows.install(tmp_path)) == sorted(TEMPLATES)
    assert workflows.install(tmp_path) == []
    edited = tmp_path / ".github" / "workflows" / "kaizen-main.yaml"
    edited.write_text(edited.read_text() + "# local edit\n")
    assert workflows.install(tmp_path, check=True) == ["kaizen-main.yaml"]
    with pytest.raises(Exception, match=r"kaizen-main\.yaml .* differ"):
        workflows.install(tmp_path)
    assert workflows.install(tmp_path, force=True) == ["kaizen-main.yaml"]


def test_actionlint_reports_nothing() -> None:
    actionlint = _tool("actionlint", Path.home() / ".cache" / "kaizen" / "bin" / "actionlint")
    proc = subprocess.run([actionlint, "-no-color", *sorted(map(str, WORKFLOWS.glob("*.y*ml")))],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_pedantic_reports_nothing() -> None:
    zizmor = _tool("zizmor", Path(sys.executable).with_name("zizmor"))
    proc = subprocess.run([zizmor, "--offline", "--persona", "pedantic", "--no-progress", str(WORKFLOWS)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    uses = [(name, step["uses"]) for name, _, job in _jobs() for step in job["steps"] if "uses" in step]
    assert uses
    assert [u for u in uses if not SHA_PIN.match(u[1])] == []


def test_permissions_are_empty_by_default_and_minimal_per_job() -> None:
    for name in TEMPLATES:
        assert _doc(name)["permissions"] == {}, name
    for name, job_name, job in _jobs():
        perms = job.get("permissions")
        assert isinstance(perms, dict) and perms, f"{name}:{job_name} has no explicit permissions"
        assert "write-all" not in str(perms)
        assert set(perms) <= {"contents", "id-token", "pull-requests"}, f"{name}:{job_name}: {perms}"
        if (name, job_name) == ("kaizen-retrain.yaml", "retrain"):  # pushes the candidate's branch only
            assert "kaizen ci propose" in " ".join(_runs(job)) and "environment" not in job
            assert "id-token" not in perms, "the retraining job needs no cloud credentials"
            continue
        assert perms.get("contents") == "read", f"{name}:{job_name} writes to the repository"


def test_cloud_credentials_only_by_oidc_and_never_for_forks() -> None:
    for name in TEMPLATES:
        assert "secrets." not in TEMPLATES[name], f"{name} uses a stored secret; use OIDC"
        assert "pull_request_target" not in _doc(name)["on"], f"{name} runs fork code with the base's rights"
    for name, job_name, job in _jobs():
        oidc = job["permissions"].get("id-token") == "write"
        cloud_steps = [s for s in job["steps"] if "uses" in s and s["uses"].split("/")[0]
                       in ("aws-actions", "azure", "google-github-actions")]
        assert oidc == bool(cloud_steps), f"{name}:{job_name}: id-token only where a cloud login is"
        if oidc:
            assert job.get("environment"), f"{name}:{job_name}: cloud credentials need an environment"
            on = _doc(name)["on"]
            if "pull_request" in on:
                assert "head.repo.full_name == github.repository" in str(job.get("if")), (
                    f"{name}:{job_name}: fork pull requests must not reach cloud credentials")


def test_stack_jobs_have_one_concurrency_group_that_never_cancels_an_up() -> None:
    groups: dict[str, str] = {}
    for name, job_name, job in _jobs():
        if not any(cmd in run for run in _runs(job) for cmd in STACK_COMMANDS):
            continue
        concurrency = job.get("concurrency")
        assert isinstance(concurrency, dict), f"{name}:{job_name} changes a stack without a concurrency group"
        assert concurrency["cancel-in-progress"] is False, f"{name}:{job_name} could cancel a running up"
        groups[f"{name}:{job_name}"] = concurrency["group"]
    assert "matrix.cloud" in groups["kaizen-main.yaml:production"]
    # The pull request's preview stack is one group whether it is being updated or destroyed.
    assert groups["kaizen-pull-request.yaml:preview-cloud"] == groups["kaizen-pull-request-closed.yaml:destroy"]


def test_production_is_behind_its_environment_and_promotes_what_staging_runs() -> None:
    main = _doc("kaizen-main.yaml")["jobs"]
    assert main["production"]["environment"] == "production"
    assert main["production"]["needs"] == "staging"
    runs = " ".join(_runs(main["production"]))
    assert "kaizen ci promote" in runs and "publish" not in runs  # built once, in staging
    rollback = [s for s in main["production"]["steps"] if "kaizen ci rollback" in s.get("run", "")]
    assert rollback and "steps.smoke.outcome == 'failure'" in rollback[0]["if"]


def test_every_kaizen_command_the_workflows_run_exists() -> None:
    cli = get_command(app)
    used = {m.group(1) for text in TEMPLATES.values()
            for m in re.finditer(r"kaizen (ci(?: preview)? [a-z-]+|retrain)", text)}
    assert {"ci publish", "ci deploy", "ci promote", "ci rollback", "ci cleanup", "ci comment", "ci propose"} <= used
    for command in used:
        group: Any = cli
        for part in command.split():
            group = group.commands[part]  # KeyError names a command that does not exist
        assert group.callback is not None
