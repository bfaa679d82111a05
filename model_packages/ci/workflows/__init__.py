"""Kaizen's GitHub Actions workflows for a model repository, and `kaizen init-ci` to install them."""

from __future__ import annotations

from pathlib import Path

from model_packages.errors import KaizenError

TEMPLATES = Path(__file__).parent
PROJECT = TEMPLATES.parent / "project"
# The GitHub environments the workflows' cloud jobs run in: the platform stacks' OIDC trust names
# exactly these subjects (repo:<owner>/<name>:environment:<env>).
DEPLOY_ENVIRONMENTS = ("preview", "staging", "production")


def templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(TEMPLATES.glob("kaizen-*.yaml"))}


def install(repository: Path, *, check: bool = False, force: bool = False) -> list[str]:
    """Write the workflows to REPOSITORY/.github/workflows; the names written (with `check`: the
    names missing or different, nothing written). A workflow edited locally is kept unless `force`."""
    target = repository / ".github" / "workflows"
    changed = [name for name, text in templates().items()
               if not (target / name).is_file() or (target / name).read_text() != text]
    if check:
        return changed
    edited = [name for name in changed if (target / name).is_file()]
    if edited and not force:
        raise KaizenError(f"{', '.join(edited)} in {target} differ from Kaizen's: pass --force to replace them")
    target.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (target / name).write_text(templates()[name])
    return changed


def project_files() -> dict[str, str]:
    """The Kaizen Pulumi project a model repository needs (the `kaizen ci` commands run in it):
    Pulumi.yaml (`stackConfigDir: stacks`), `__main__.py` calling the installed program, the
    preview templates `stacks/templates/Pulumi.pr.<target>.yaml` and `stacks/Pulumi.<cloud>-staging|prod.yaml`."""
    return {str(p.relative_to(PROJECT)).removesuffix(".tmpl"): p.read_text()
            for p in sorted(PROJECT.rglob("*")) if p.is_file()}


def _destinations(repository: Path) -> tuple[dict[str, Path], list[str]]:
    """Where each project file goes in REPOSITORY (its own stackConfigDir if it has a Pulumi.yaml),
    and what keeps an existing project from running `kaizen ci`."""
    import yaml

    where = {name: repository / name for name in project_files()}
    pulumi_yaml = repository / "Pulumi.yaml"
    if not pulumi_yaml.is_file():
        return where, []
    doc = yaml.safe_load(pulumi_yaml.read_text()) or {}
    problems = []
    if doc.get("name") != "kaizen":
        problems.append(f"{pulumi_yaml}: the project name is {doc.get('name')!r}, not 'kaizen' "
                        "(the stack config keys are kaizen:...)")
    if not doc.get("stackConfigDir"):
        problems.append(f"{pulumi_yaml}: no stackConfigDir (Kaizen keeps stack config in a directory, stacks/)")
    runtime = doc.get("runtime")
    if (runtime.get("name") if isinstance(runtime, dict) else runtime) != "python":
        problems.append(f"{pulumi_yaml}: the runtime is not python (the program is Kaizen's kaizen_infra.program)")
    entry = repository / str(doc.get("main") or ".")
    entry = entry / "__main__.py" if entry.is_dir() else entry
    if entry.is_file() and "kaizen_infra.program" not in entry.read_text():
        problems.append(f"{entry} does not run Kaizen's program (`from kaizen_infra.program import main; main()`)")
    where["__main__.py"] = entry
    config_dir = repository / str(doc.get("stackConfigDir") or "stacks")
    for name in where:
        if name.startswith("stacks/"):
            where[name] = config_dir / name.removeprefix("stacks/")
    return where, problems


def install_project(repository: Path, *, check: bool = False, force: bool = False) -> list[str]:
    """Write the project files REPOSITORY lacks (stack files are the user's once written: never
    replaced; `force` replaces a differing Pulumi.yaml and __main__.py); with `check`, write nothing
    and return the missing ones. An existing project `kaizen ci` could not use is refused, naming
    what is wrong, before any write."""
    files = project_files()
    where, problems = _destinations(repository)
    if force:
        where, problems = {name: repository / name for name in files}, []
    missing = [name for name, path in where.items() if not path.is_file()
               or (force and not name.startswith("stacks/") and path.read_text() != files[name])]
    if problems:
        raise KaizenError("the existing Pulumi project cannot run `kaizen ci`:\n  " + "\n  ".join(problems)
                          + "\n(fix it, or pass --force to write Kaizen's Pulumi.yaml and __main__.py)")
    if check:
        return missing
    for name in missing:
        where[name].parent.mkdir(parents=True, exist_ok=True)
        where[name].write_text(files[name])
    return missing
