"""`kaizen preview up|preview|destroy N`: preview stacks `pr-N` on the local target.

Thin wrapper around ``scripts/preview-stack.sh`` (the same mechanics a pull request uses: create
`pr-N` from the template, `pulumi up`, then destroy and remove it). Needs a checkout (the stack
program and templates live there).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

_ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = _ROOT / "scripts" / "preview-stack.sh"

preview_app = typer.Typer(help="Preview stacks pr-<N> on the local target.", no_args_is_help=True)


def _run(action: str, number: int) -> None:
    if not _SCRIPT.is_file():
        typer.echo(f"{_SCRIPT} not found: run from a Kaizen checkout", err=True)
        raise typer.Exit(2)
    code = subprocess.call(["bash", str(_SCRIPT), action, str(number)], cwd=_ROOT)
    if code:
        raise typer.Exit(code)


@preview_app.command("up")
def up(number: int = typer.Argument(..., help="Pull request number N (stack pr-N).")) -> None:
    """Create pr-N from the template if needed and `pulumi up` it."""
    _run("up", number)


@preview_app.command("diff")
def diff(number: int = typer.Argument(..., help="Pull request number N (stack pr-N).")) -> None:
    """`pulumi preview --diff` of pr-N."""
    _run("preview", number)


@preview_app.command("destroy")
def destroy(number: int = typer.Argument(..., help="Pull request number N (stack pr-N).")) -> None:
    """`pulumi destroy` pr-N, remove the stack and its config file."""
    _run("destroy", number)


def register(app: typer.Typer) -> None:
    app.add_typer(preview_app, name="preview")
