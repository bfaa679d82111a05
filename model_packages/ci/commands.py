"""`kaizen ci ...`: every step of the GitHub Actions workflows, runnable (and tested) anywhere.

    kaizen ci changed --base origin/main        model packages changed since BASE (JSON list)
    kaizen ci test                              the repository's own lint (ruff) and tests (pytest)
    kaizen ci deploy STACK --image REF@sha256:…  set kaizen:image, `pulumi up`, record in the audit trail
    kaizen ci promote --from staging --to prod  deploy exactly the digest staging runs
    kaizen ci rollback STACK                    redeploy the digest deployed before the current one
    kaizen ci preview up|destroy --pr N         the pull request's preview stack (destroy is idempotent)
    kaizen ci cleanup --open 3,5 | --github     destroy preview stacks whose pull request is closed
    kaizen ci smoke URL --package DIR           readiness + one prediction of a typical row
    kaizen ci comment --pr N --outputs F        create or update the pull request's one Kaizen comment
    kaizen ci propose CANDIDATE --package DIR   a pull request with a retrained package version
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from model_packages.errors import KaizenError

ci_app = typer.Typer(help="Continuous deployment steps (what the GitHub Actions workflows run).",
                     no_args_is_help=True)
preview_app = typer.Typer(help="Preview stacks of pull requests.", no_args_is_help=True)
ci_app.add_typer(preview_app, name="preview")
out = Console()
err = Console(stderr=True)

ProjectDir = Annotated[Path, typer.Option("--project-dir", help="Pulumi project directory")]
Target = Annotated[str, typer.Option(help="local, aws, azure or gcp")]


def _project(directory: Path) -> Any:
    from model_packages.ci.stacks import Project, check_backend

    if not (directory / "Pulumi.yaml").is_file():
        raise typer.BadParameter(f"{directory} has no Pulumi.yaml", param_hint="--project-dir")
    try:
        check_backend()
    except KaizenError as error:
        raise _fail(error) from None
    return Project(directory.resolve(), echo=lambda line: err.print(line, end="", markup=False, highlight=False))


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=1)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


@ci_app.command("changed")
def changed(
    base: Annotated[str, typer.Option(help="Git revision to compare HEAD with")] = "origin/main",
    root: Annotated[Path, typer.Option(help="Repository root")] = Path("."),
) -> None:
    """Model package directories (holding a kaizen.yaml) with a file changed since BASE."""
    proc = subprocess.run(["git", "-C", str(root), "diff", "--name-only", f"{base}...HEAD"],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise _fail(KaizenError(f"git diff against {base} failed: {proc.stderr.strip()}"))
    top = root.resolve()
    found: set[str] = set()
    for name in proc.stdout.split():
        for parent in (top / name).parents:
            if parent == top.parent or not str(parent).startswith(str(top)):
                break
            if (parent / "kaizen.yaml").is_file():
                found.add(str(parent.relative_to(top)))
                break
    _print_json(sorted(found))


@ci_app.command("check-packages")
def check_packages(
    packages: Annotated[str, typer.Argument(help="JSON list of package directories (`kaizen ci changed`)")],
) -> None:
    """Verify and load every package (hash, schema, artifact agreement); fail on the first bad one."""
    from model_packages.package import verify_package

    try:
        names = json.loads(packages)
    except ValueError:
        raise typer.BadParameter(f"{packages!r} is not a JSON list") from None
    for name in names:
        try:
            manifest = verify_package(Path(name), load=True)
        except KaizenError as error:
            raise _fail(KaizenError(f"{name}: {error}")) from None
        err.print(f"{name}: {manifest.name} {manifest.version} ok")


@ci_app.command("test")
def test_repository(
    root: Annotated[Path, typer.Option(help="Repository root")] = Path("."),
) -> None:
    """The repository's own checks: `ruff check` when it holds Python code, `pytest` when it has a
    tests/ directory; every check runs, and the command fails if any failed."""
    from model_packages.ci.checks import repository_checks, run_checks

    try:
        checks = repository_checks(root)
    except KaizenError as error:
        raise _fail(error) from None
    if not checks:
        err.print("no Python code and no tests/ directory: nothing to lint or test")
        return
    failed = run_checks(root, checks)
    if failed:
        raise _fail(KaizenError(f"failed: {', '.join(failed)}"))
    err.print(f"passed: {', '.join(c.name for c in checks)}")


@ci_app.command("publish")
def publish(
    package: Annotated[Path, typer.Argument(help="Model package directory")],
    registry: Annotated[str | None, typer.Option(help="Registry host[:port]")] = None,
    target: Annotated[str | None, typer.Option(help="Target whose $KAIZEN_REGISTRY_<TARGET> to push to")] = None,
    base: Annotated[str | None, typer.Option(help="Runtime base image (default: upstream, by digest)")] = None,
    local_base: Annotated[bool, typer.Option("--local-base", help="Use the local mmdebstrap bases")] = False,
) -> None:
    """Build the package's image once and push it; print the digest-pinned reference (one line)."""
    import os

    from model_packages.image import base as base_mod
    from model_packages.image.build import build_package, docker_client
    from model_packages.image.context import Bases
    from model_packages.image.registry import push_image
    from model_packages.image.settings import ImageSettings
    from model_packages.package import verify_package

    if registry is None and target is not None:
        registry = os.environ.get(f"KAIZEN_REGISTRY_{target.upper()}") or None
    if registry is None:
        raise typer.BadParameter("give --registry, or --target with $KAIZEN_REGISTRY_<TARGET> set")
    try:
        manifest = verify_package(package, load=True)  # the build's one verification (and a load)
        settings = ImageSettings.from_env()
        bases = (Bases(base or base_mod.RUNTIME_BASE, base_mod.BUILDER_BASE) if local_base
                 else Bases.choose(base, None, settings))
        client = docker_client()
        if local_base:
            base_mod.ensure_bases(client, log=lambda m: err.print(m), settings=settings)
        built = build_package(package, bases=bases, client=client, log=lambda m: err.print(m, highlight=False),
                              manifest=manifest, settings=settings, source=settings.image_source)
        pushed = push_image(built.tag, registry, client=client, log=lambda m: err.print(m, highlight=False))
    except KaizenError as error:
        raise _fail(error) from None
    typer.echo(pushed.reference)


@ci_app.command("deploy")
def deploy(
    stack: Annotated[str, typer.Argument(help="Stack to deploy to (it must exist)")],
    image: Annotated[str, typer.Option(help="Digest-pinned image reference")],
    package: Annotated[str | None, typer.Option(
        help="Model package: use its own stack STACK-<package> (config from stacks/Pulumi.STACK.yaml)")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Deploy exactly `image` to an existing stack and record it in the audit trail."""
    from model_packages.ci import stacks

    try:
        project = _project(project_dir)
        name = stacks.package_stack(project, stack, package) if package else stack
        _print_json(stacks.deploy(project, name, image))
    except KaizenError as error:
        raise _fail(error) from None


@ci_app.command("promote")
def promote(
    source: Annotated[str, typer.Option("--from", help="Stack whose image is promoted")],
    target: Annotated[str, typer.Option("--to", help="Stack to deploy it to")],
    package: Annotated[str | None, typer.Option(
        help="Model package: use its own stack STACK-<package> (config from stacks/Pulumi.STACK.yaml)")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Deploy to --to exactly the digest --from runs (build once, promote by digest)."""
    from model_packages.ci import stacks

    try:
        project = _project(project_dir)
        if package:
            source, target = (stacks.package_stack(project, s, package) for s in (source, target))
        image, outputs = stacks.promote(project, source, target)
    except KaizenError as error:
        raise _fail(error) from None
    err.print(f"promoted {image} from {source} to {target}")
    _print_json(outputs)


@ci_app.command("rollback")
def rollback(
    stack: Annotated[str, typer.Argument(help="Stack to roll back")],
    package: Annotated[str | None, typer.Option(
        help="Model package: use its own stack STACK-<package> (config from stacks/Pulumi.STACK.yaml)")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Redeploy the image deployed before the current one; record the rollback in the audit trail.

    The previous image comes from the stack's update history in the Pulumi backend (each `kaizen ci
    deploy`/`rollback` update names its image): that record outlives a CI runner, whose audit trail
    file does not unless it is shipped somewhere."""
    from model_packages.ci import stacks

    try:
        project = _project(project_dir)
        if package:
            stack = stacks.package_stack(project, stack, package)
        image, outputs = stacks.rollback(project, stack)
    except KaizenError as error:
        raise _fail(error) from None
    err.print(f"rolled {stack} back to {image}")
    _print_json(outputs)


@preview_app.command("up")
def preview_up(
    pr: Annotated[int, typer.Option(help="Pull request number")],
    target: Target = "local",
    image: Annotated[str | None, typer.Option(help="Digest-pinned image (else the template's package)")] = None,
    package: Annotated[str | None, typer.Option(help="Model package to build (local target)")] = None,
    summary: Annotated[Path | None, typer.Option(help="Write the update's resource changes here")] = None,
    preview_summary: Annotated[Path | None, typer.Option(
        help="Run `pulumi preview` before the update and write its summary here")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Create or update the preview stack of pull request PR and `pulumi up` it; print its outputs."""
    from model_packages.ci import stacks

    try:
        _print_json(stacks.preview_up(_project(project_dir), target, pr, image=image, package=package,
                                      summary=summary, preview_summary=preview_summary))
    except KaizenError as error:
        raise _fail(error) from None


@preview_app.command("destroy")
def preview_destroy(
    pr: Annotated[int, typer.Option(help="Pull request number")],
    target: Target = "local",
    package: Annotated[str | None, typer.Option(help="Only this package's stack (default: all of the PR's)")]
    = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Destroy and remove the preview stacks of PR; succeeds when there is none."""
    from model_packages.ci import stacks

    try:
        destroyed = stacks.preview_destroy(_project(project_dir), target, pr, package)
        name = stacks.preview_stack_name(target, pr, package)
    except KaizenError as error:
        raise _fail(error) from None
    err.print(f"destroyed {', '.join(destroyed)}" if destroyed else f"{name}: no such stack, nothing to do")


@preview_app.command("smoke")
def preview_smoke(
    pr: Annotated[int, typer.Option(help="Pull request number")],
    package: Annotated[str, typer.Option(help="The model package previewed")],
    target: Target = "local",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness")] = 300.0,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Smoke-test the preview stack of PACKAGE in pull request PR (named as `preview up` names it)."""
    from model_packages.ci import stacks
    from model_packages.ci.smoke import smoke_outputs

    try:
        project = _project(project_dir)
        name = stacks.preview_stack_name(target, pr, package)
        _print_json(smoke_outputs(stacks.outputs_of(project, name), project.directory / package, timeout=timeout))
    except KaizenError as error:
        raise _fail(error) from None


@ci_app.command("cleanup")
def cleanup(
    target: Target = "local",
    open_prs: Annotated[str | None, typer.Option("--open", help="Comma-separated open pull requests")] = None,
    github: Annotated[str | None, typer.Option(help="OWNER/NAME: ask GitHub which pull requests are open")] = None,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Destroy every preview stack whose pull request is not open."""
    from model_packages.ci import stacks
    from model_packages.ci.github import GitHub

    if (open_prs is None) == (github is None):
        raise typer.BadParameter("give exactly one of --open or --github")
    try:
        if github:
            keep = GitHub(github).open_pull_requests()
        else:
            keep = [int(n) for n in (open_prs or "").split(",") if n.strip()]
        _print_json({"destroyed": stacks.cleanup(_project(project_dir), target, keep)})
    except ValueError:
        raise typer.BadParameter(f"--open {open_prs!r} is not a comma-separated list of numbers") from None
    except KaizenError as error:
        raise _fail(error) from None


@ci_app.command("smoke-stack")
def smoke_stack(
    stack: Annotated[str, typer.Argument(help="Deployed stack")],
    package: Annotated[Path, typer.Option(help="The model package deployed there")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness")] = 300.0,
    per_package: Annotated[bool, typer.Option(
        "--per-package", help="STACK is shared: smoke the package's own stack STACK-<package>")] = False,
    project_dir: ProjectDir = Path("."),
) -> None:
    """Smoke-test a stack's endpoint from its outputs (HTTP targets; Azure ML by its scoring URI with an
    Entra ID token from $KAIZEN_SMOKE_TOKEN or the Azure CLI; SageMaker through its API)."""
    from model_packages.ci.smoke import smoke_outputs
    from model_packages.ci.stacks import outputs_of, package_stack

    try:
        project = _project(project_dir)
        name = package_stack(project, stack, str(package)) if per_package else stack
        _print_json(smoke_outputs(outputs_of(project, name), project.directory / package, timeout=timeout))
    except KaizenError as error:
        raise _fail(error) from None


@ci_app.command("audience")
def smoke_audience(
    outputs: Annotated[Path, typer.Option(help="JSON file of the stack's outputs (what deploy/preview up print)")],
) -> None:
    """Print the audience of the ID token the smoke test needs (a Cloud Run service URL), or nothing."""
    from model_packages.ci.smoke import audience

    try:
        values = json.loads(outputs.read_text())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{outputs}: {error}", param_hint="--outputs") from None
    typer.echo(audience(values if isinstance(values, dict) else {}))


@ci_app.command("smoke")
def smoke(
    url: Annotated[str, typer.Argument(help="Endpoint base URL")],
    package: Annotated[Path, typer.Option(help="The model package deployed there")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness")] = 120.0,
) -> None:
    """Wait until the endpoint is ready and predict one typical row."""
    from model_packages.ci.smoke import smoke as run_smoke

    try:
        _print_json(run_smoke(url, package, timeout=timeout))
    except KaizenError as error:
        raise _fail(error) from None


@ci_app.command("comment")
def comment(
    pr: Annotated[int, typer.Option(help="Pull request number")],
    repository: Annotated[str, typer.Option(envvar="GITHUB_REPOSITORY", help="OWNER/NAME")],
    outputs: Annotated[Path | None, typer.Option(help="JSON file of the preview stack's outputs")] = None,
    section: Annotated[list[str] | None, typer.Option(help="TITLE=FILE: a report to include (repeatable)")] = None,
    stack: Annotated[str | None, typer.Option(
        help="The preview stack shown: one comment per stack (matrix jobs do not overwrite each other)")] = None,
) -> None:
    """Create or update the pull request's single Kaizen comment (trimmed to GitHub's limit)."""
    from model_packages.ci.github import GitHub, render_comment

    sections: dict[str, str] = {}
    for item in section or []:
        title, sep, file = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--section {item!r} is not TITLE=FILE")
        path = Path(file)
        if path.is_file():
            sections[title] = path.read_text(errors="replace")
    values = json.loads(outputs.read_text()) if outputs and outputs.is_file() else {}
    try:
        action, number = GitHub(repository).upsert_comment(pr, render_comment(pr, values, sections, stack=stack),
                                                           key=stack)
    except KaizenError as error:
        raise _fail(error) from None
    err.print(f"comment {number} {action}")


@ci_app.command("propose")
def propose(
    candidate: Annotated[Path | None, typer.Argument(help="The retrained package")] = None,
    from_retrain: Annotated[Path | None, typer.Option(help="`kaizen retrain`'s JSON output, naming the package")]
    = None,
    *,
    package: Annotated[Path, typer.Option(help="The package directory in the repository it replaces")],
    repository: Annotated[str, typer.Option(envvar="GITHUB_REPOSITORY", help="OWNER/NAME")],
    base: Annotated[str, typer.Option(help="Branch the pull request targets")] = "main",
    report: Annotated[list[str] | None, typer.Option(help="TITLE=FILE for the body (repeatable)")] = None,
    repo: Annotated[Path, typer.Option(help="Repository checkout")] = Path("."),
    dispatch: Annotated[str | None, typer.Option(
        help="Then start this workflow (file name) on the branch with inputs pr and base: a pull request "
             "opened with GITHUB_TOKEN starts no pull_request workflow")] = None,
) -> None:
    """Open a pull request that replaces PACKAGE with CANDIDATE (same preview and review path)."""
    from model_packages.ci.github import GitHub
    from model_packages.ci.propose import propose as run_propose

    if from_retrain is not None:
        outcome = json.loads(from_retrain.read_text())
        if not outcome.get("promoted"):
            _print_json({"proposed": False, "reason": "the gate rejected the candidate"})
            return
        candidate = Path(outcome["package"])
    if candidate is None:
        raise typer.BadParameter("give the candidate package, or --from-retrain naming one")
    reports: dict[str, Path] = {}
    for item in report or []:
        title, sep, file = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--report {item!r} is not TITLE=FILE")
        reports[title] = Path(file)
    try:
        github = GitHub(repository)
        branch, number = run_propose(repo.resolve(), candidate, package, github, base=base, reports=reports)
        if dispatch:
            github.dispatch_workflow(dispatch, branch, {"pr": str(number), "base": base})
    except KaizenError as error:
        raise _fail(error) from None
    _print_json({"proposed": True, "branch": branch, "pull_request": number, "dispatched": dispatch})


def init_ci(
    directory: Annotated[Path, typer.Argument(help="Repository root")] = Path("."),
    check: Annotated[bool, typer.Option(help="Only check that the workflows and the project are present and current")]
    = False,
    force: Annotated[bool, typer.Option(help="Overwrite workflows and project files that differ")] = False,
) -> None:
    """Write Kaizen's GitHub Actions workflows into DIRECTORY/.github/workflows, and the Kaizen Pulumi
    project the `kaizen ci` commands run in (Pulumi.yaml, __main__.py, stacks/) where it is missing."""
    from model_packages.ci.workflows import install, install_project

    try:
        install_project(directory, check=True, force=force)  # refuses an unusable project before any write
        changed_files = install(directory, check=check, force=force)
        project_files = install_project(directory, check=check, force=force)
    except KaizenError as error:
        raise _fail(error) from None
    for name in changed_files:
        err.print(f"{'differs' if check else 'wrote'} .github/workflows/{name}")
    for name in project_files:
        err.print(f"{'missing' if check else 'wrote'} {name}")
    if not check and any(name.startswith("stacks/") for name in project_files):
        err.print("edit the stacks/ files written (platform stack, region, owner, model) before the first run")
    if check and (changed_files or project_files):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(ci_app, name="ci")
    app.command("init-ci")(init_ci)
