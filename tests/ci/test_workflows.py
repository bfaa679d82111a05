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
from typer.testing import CliRunner

from model_packages.ci import workflows
from model_packages.cli import app
from tests.support import ROOT, unavailable

WORKFLOWS = ROOT / ".github" / "workflows"
TEMPLATES = workflows.templates()
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
OIDC_LOGINS = ("aws-actions/configure-aws-credentials", "azure/login", "google-github-actions/auth",
               "pulumi/auth-actions")
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
        unavailable(f"{name} is not installed: run scripts/setup.sh",
                    ci=f"CI must provide {name} (scripts/setup.sh installs it)")
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


def test_init_ci_writes_a_usable_kaizen_pulumi_project(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init-ci", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((tmp_path / "Pulumi.yaml").read_text())
    assert doc["name"] == "kaizen" and doc["stackConfigDir"] == "stacks" and doc["runtime"] == "python"
    assert "from kaizen_infra.program import main" in (tmp_path / "__main__.py").read_text()
    for target in ("local", "aws", "azure", "gcp"):
        assert (tmp_path / "stacks" / "templates" / f"Pulumi.pr.{target}.yaml").is_file()
    for stack in ("aws-staging", "aws-prod", "azure-staging", "azure-prod", "gcp-staging", "gcp-prod"):
        assert yaml.safe_load((tmp_path / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "stacks").rglob("*.yaml"))
    assert len(written) == 10
    for name in written:  # exactly the canonical stack files, as regular files the user then owns
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).read_text() == (ROOT / name).read_text()
    assert CliRunner().invoke(app, ["init-ci", str(tmp_path), "--check"]).exit_code == 0
    # Stack files are the user's once written: a rerun, even with --force, keeps an edit.
    edited = tmp_path / "stacks" / "Pulumi.aws-prod.yaml"
    edited.write_text(edited.read_text() + "# my region\n")
    assert CliRunner().invoke(app, ["init-ci", str(tmp_path), "--force"]).exit_code == 0
    assert edited.read_text().endswith("# my region\n")
    (tmp_path / "__main__.py").unlink()
    missing = CliRunner().invoke(app, ["init-ci", str(tmp_path), "--check"])
    assert missing.exit_code == 1 and "missing __main__.py" in " ".join(missing.output.split())


def test_init_ci_refuses_a_pulumi_project_kaizen_cannot_use_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: my-infra\nruntime: nodejs\n")
    result = CliRunner().invoke(app, ["init-ci", str(tmp_path)])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    for problem in ("not 'kaizen'", "no stackConfigDir", "runtime is not python"):
        assert problem in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.yaml"]  # nothing half-done


def test_the_packaged_stacks_have_one_home_this_repositorys_stacks() -> None:
    """The stack files `kaizen init-ci` writes are links to stacks/ (git symlinks: an editable install
    reads through them, and a built wheel carries their content), not copies that can drift."""
    packaged = [name for name in workflows.project_files() if name.startswith("stacks/")]
    assert len(packaged) == 10
    for name in packaged:
        path = workflows.PROJECT / name
        assert path.is_symlink() and path.resolve() == (ROOT / name).resolve(), \
            f"{path} must be a relative symlink to {ROOT / name}"
        assert not Path(os.readlink(path)).is_absolute()
        assert workflows.project_files()[name] == (ROOT / name).read_text()
    assert yaml.safe_load(workflows.project_files()["Pulumi.yaml"])["name"] == yaml.safe_load(
        (ROOT / "Pulumi.yaml").read_text())["name"]


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
        assert set(perms) <= {"contents", "id-token", "pull-requests", "actions"}, f"{name}:{job_name}: {perms}"
        if (name, job_name) == ("kaizen-retrain.yaml", "retrain"):  # pushes the candidate's branch only
            assert perms.get("actions") == "write" and "--dispatch kaizen-pull-request.yaml" in " ".join(_runs(job))
            assert "kaizen ci propose" in " ".join(_runs(job)) and "environment" not in job
            assert "id-token" not in perms, "the retraining job needs no cloud credentials"
            continue
        assert perms.get("contents") == "read", f"{name}:{job_name} writes to the repository"
        assert "actions" not in perms, f"{name}:{job_name} needs no rights on workflows"


def test_main_signs_its_audit_records_keylessly_and_checks_the_trail() -> None:
    """Deploy jobs hold an OIDC identity: their records get a Fulcio certificate for this workflow
    (the only identity trusted when checked), and each job ends by checking the trail."""
    env = _doc("kaizen-main.yaml")["env"]
    assert env["KAIZEN_AUDIT_SIGNER"] == "sigstore"
    assert env["KAIZEN_AUDIT_ISSUER"] == "https://token.actions.githubusercontent.com"
    assert env["KAIZEN_AUDIT_IDENTITY"] == "${{ github.server_url }}/${{ github.workflow_ref }}"
    for job_name, job in _doc("kaizen-main.yaml")["jobs"].items():
        assert job["permissions"].get("id-token") == "write", job_name
        installs = [r for r in _runs(job) if "pip install" in r and "kaizen-ml[" in r]
        assert installs and all("sigstore" in r.split("kaizen-ml[", 1)[1].split("]")[0] for r in installs), job_name
        last = job["steps"][-1]
        assert last.get("run") == "kaizen audit verify --no-registry" and last.get("if") == "always()", job_name


def test_cloud_credentials_only_by_oidc_and_never_for_forks() -> None:
    for name in TEMPLATES:
        assert "secrets." not in TEMPLATES[name], f"{name} uses a stored secret; use OIDC"
        assert "pull_request_target" not in _doc(name)["on"], f"{name} runs fork code with the base's rights"
    for name, job_name, job in _jobs():
        oidc = job["permissions"].get("id-token") == "write"
        cloud_steps = [s for s in job["steps"] if "uses" in s and s["uses"].split("@")[0]
                       in OIDC_LOGINS]
        assert oidc == bool(cloud_steps), f"{name}:{job_name}: id-token only where a cloud login is"
        if oidc:
            assert job.get("environment"), f"{name}:{job_name}: cloud credentials need an environment"
            on = _doc(name)["on"]
            if "pull_request" in on:
                assert "head.repo.full_name == github.repository" in " ".join(str(job.get("if")).split()), (
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
    for job in ("kaizen-main.yaml:staging", "kaizen-main.yaml:production", "kaizen-pull-request.yaml:preview-cloud",
                "kaizen-pull-request.yaml:preview-local", "kaizen-pull-request-closed.yaml:destroy"):
        assert groups[job].endswith("-${{ matrix.package }}"), f"{job}: one group per package's stack"
    # The pull request's preview stack is one group whether it is being updated or destroyed.
    # (`|| inputs.pr`: the same number when the workflow is dispatched for a retraining pull request.)
    assert groups["kaizen-pull-request.yaml:preview-cloud"].replace(" || inputs.pr", "") == groups[
        "kaizen-pull-request-closed.yaml:destroy"]


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


def test_the_comment_shows_the_preview_and_update_summaries_the_job_writes() -> None:
    """Each `pulumi preview`/`pulumi up` section of the comment reads a file a step of the same job
    writes with `--preview-summary`/`--summary` (the picture in the README shows both)."""
    commenting = [(name, job_name, job) for name, job_name, job in _jobs()
                  if any("kaizen ci comment" in run for run in _runs(job))]
    assert commenting
    for name, job_name, job in commenting:
        runs = _runs(job)
        comment = next(run for run in runs if "kaizen ci comment" in run)
        sections = dict(re.findall(r'--section "([^="]+)=([^"]+)"', comment))
        assert {"pulumi preview", "pulumi up"} <= set(sections), f"{name}:{job_name}: {sections}"
        before = " ".join(runs[: runs.index(comment)])
        assert f"--preview-summary {sections['pulumi preview']}" in before, f"{name}:{job_name}"
        assert f"--summary {sections['pulumi up']}" in before, f"{name}:{job_name}"


def test_the_retraining_pull_request_gets_the_pull_request_workflow_by_dispatch() -> None:
    """GitHub starts no pull_request workflow for a pull request opened with GITHUB_TOKEN; the
    retraining job dispatches the pull-request workflow on the branch instead, which accepts that
    dispatch and names every stack and concurrency group by the same number pr-N."""
    on = _doc("kaizen-pull-request.yaml")["on"]
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["pr"]["required"] is True and inputs["pr"]["type"] == "number" and "base" in inputs
    text = TEMPLATES["kaizen-pull-request.yaml"]
    assert "github.event.pull_request.number" in text
    assert re.findall(r"github\.event\.pull_request\.number(?! \|\| inputs\.pr)", text) == []
    assert "github.base_ref || inputs.base" in text
    for _, job_name, job in [j for j in _jobs() if j[0] == "kaizen-pull-request.yaml"]:
        if job["permissions"].get("id-token"):  # a dispatch comes from a writer of this repository, never a fork
            assert "github.event_name == 'workflow_dispatch'" in str(job["if"]), job_name
    propose = next(run for _, _, job in _jobs() for run in _runs(job) if "kaizen ci propose" in run)
    assert "--dispatch kaizen-pull-request.yaml" in propose and '--report "drift report=' in propose


def test_every_package_gets_its_own_jobs_and_stacks() -> None:
    """Multi-package repositories: each stack job is a matrix over the packages (the pull request's
    changed ones, or KAIZEN_PACKAGES on main) and every stack command names its package, so each
    package has its own stack (pr-N-<package>, <cloud>-staging-<package>, ...)."""
    sources = {"kaizen-pull-request.yaml": "needs.check.outputs.packages", "kaizen-main.yaml": "vars.KAIZEN_PACKAGES",
               "kaizen-pull-request-closed.yaml": "needs.packages.outputs.packages"}
    for name, job_name, job in _jobs():
        runs = [run for run in _runs(job) if any(cmd in run for cmd in (*STACK_COMMANDS, "smoke"))]
        if name not in sources or not runs:
            continue
        assert job["strategy"]["matrix"]["package"] == f"${{{{ fromJSON({sources[name]}) }}}}", f"{name}:{job_name}"
        for run in runs:
            assert '--package "$PACKAGE"' in run, f"{name}:{job_name}: {run}"
        package_env = {s["env"].get("PACKAGE") for s in job["steps"] if "PACKAGE" in s.get("env", {})}
        assert package_env == {"${{ matrix.package }}"}, f"{name}:{job_name}: {package_env}"
    # The closed pull request's packages come from its own commits (the branch may be gone: refs/pull/N/head).
    packages = _doc("kaizen-pull-request-closed.yaml")["jobs"]["packages"]
    checkout = packages["steps"][0]
    assert checkout["with"]["ref"] == "refs/pull/${{ github.event.pull_request.number }}/head"
    assert checkout["with"]["fetch-depth"] == 0
    changed = next(step for step in packages["steps"] if step.get("id") == "changed")
    assert 'kaizen ci changed --base "$BASE_SHA"' in changed["run"]
    assert changed["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert all("outputs.packages)[0]" not in text for text in TEMPLATES.values())
    assert "vars.KAIZEN_PACKAGE }}" not in TEMPLATES["kaizen-main.yaml"]


def test_the_backend_is_reached_without_stored_secrets() -> None:
    """Every job whose stack steps take the repository's backend gets a Pulumi Cloud token by OIDC
    (pulumi/auth-actions, only when the backend is Pulumi Cloud) and passes the azblob storage account."""
    for name, job_name, job in _jobs():
        stack_steps = [s for s in job["steps"]
                       if s.get("env", {}).get("PULUMI_BACKEND_URL") == "${{ vars.PULUMI_BACKEND_URL }}"]
        if not stack_steps:
            continue
        auth = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/auth-actions@")]
        assert len(auth) == 1, f"{name}:{job_name}: no Pulumi Cloud OIDC exchange"
        assert auth[0]["if"] == "vars.PULUMI_BACKEND_URL == '' || startsWith(vars.PULUMI_BACKEND_URL, 'https://')"
        assert auth[0]["with"]["organization"] == "${{ vars.PULUMI_ORG }}"
        assert job["steps"].index(auth[0]) < job["steps"].index(stack_steps[0])
        for step in stack_steps:
            assert step["env"]["PULUMI_SECRETS_PROVIDER"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}", step["name"]
            assert step["env"]["AZURE_STORAGE_ACCOUNT"] == "${{ vars.AZURE_STORAGE_ACCOUNT }}", step["name"]
            assert "PULUMI_CONFIG_PASSPHRASE" not in step["env"] and "PULUMI_ACCESS_TOKEN" not in step["env"]


def test_the_cloud_run_smoke_test_gets_an_id_token_for_the_service() -> None:
    """Cloud Run with IAM invokers needs an ID token whose audience is the service URL: each job that
    smoke-tests a cloud stack asks google-github-actions/auth for one (token_format id_token, the
    audience `kaizen ci audience` reads from the stack's outputs) and passes it as KAIZEN_SMOKE_TOKEN."""
    checked = 0
    for name, job_name, job in _jobs():
        steps = job["steps"]
        smokes = [s for s in steps if "kaizen ci smoke-stack" in s.get("run", "") or "kaizen ci preview smoke" in
                  s.get("run", "")]
        if not smokes or "KAIZEN_CLOUDS" not in str(job.get("strategy", {}).get("matrix", {}).get("cloud", "")):
            continue
        for smoke in smokes:
            before = steps[: steps.index(smoke)]
            audience = [s for s in before if s.get("id") == "audience"][-1]
            assert "kaizen ci audience --outputs outputs.json" in audience["run"]
            producer = [s for s in before if "> outputs.json" in s.get("run", "")]
            assert producer and before.index(producer[-1]) < before.index(audience), f"{name}:{job_name}"
            token = [s for s in before if s.get("id") == "idtoken"][-1]
            assert token["uses"].startswith("google-github-actions/auth@")
            assert token["with"]["token_format"] == "id_token"
            assert token["with"]["id_token_audience"] == "${{ steps.audience.outputs.url }}"
            assert "matrix.cloud == 'gcp'" in token["if"]
            assert smoke["env"]["KAIZEN_SMOKE_TOKEN"] == "${{ steps.idtoken.outputs.id_token }}"
            assert smoke["env"]["KAIZEN_SMOKE_IN_NETWORK"] == "${{ vars.KAIZEN_SMOKE_IN_NETWORK }}"
            checked += 1
    assert checked == 3  # the preview, staging and production smoke tests
