"""Kaizen's GitHub Actions workflows for a model repository, and `kaizen init-ci` to install them."""

from __future__ import annotations

from pathlib import Path

from model_packages.errors import KaizenError

TEMPLATES = Path(__file__).parent
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
