"""`kaizen audit log|verify|anchor`: read and check the signed audit trail."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from model_packages.audit import provenance, trail
from model_packages.errors import KaizenError

audit_app = typer.Typer(help="The signed, hash-chained audit trail.", no_args_is_help=True)
err = Console(stderr=True)
NOTES_REF = "kaizen-audit"

TrailOption = Annotated[Path | None, typer.Option("--trail", help="Trail file (default $KAIZEN_AUDIT_TRAIL)")]


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=1)


def _git(*args: str, repo: Path) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise KaizenError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@audit_app.command("log")
def log(path: TrailOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every record (after checking chain and signatures)."""
    try:
        records = trail.read(path)
    except KaizenError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table("seq", "at", "event", "stack", "image / details", "actor")
    for r in records:
        detail = r.get("image") or ", ".join(f"{k}={v}" for k, v in r.items()
                                             if k not in {"seq", "at", "event", "stack", "actor", "prev"})
        table.add_row(str(r["seq"]), r["at"], r["event"], str(r.get("stack", "")), str(detail), str(r.get("actor", "")))
    Console().print(table)


@audit_app.command("anchor")
def anchor(
    path: TrailOption = None,
    git: Annotated[Path | None, typer.Option(help="Also keep it as a git note on HEAD of this repository")] = None,
) -> None:
    """Print the trail's head ({"seq", "head"}) to keep elsewhere; with --git, as a git note."""
    try:
        head = trail.anchor(path)
        if git is not None:
            _git("notes", f"--ref={NOTES_REF}", "add", "-f", "-m", json.dumps(head), "HEAD", repo=git)
    except KaizenError as error:
        raise _fail(error) from None
    typer.echo(json.dumps(head))


@audit_app.command("verify")
def verify(
    path: TrailOption = None,
    anchor_json: Annotated[str | None, typer.Option("--anchor", help='{"seq": n, "head": "…"} kept elsewhere')] = None,
    anchor_git: Annotated[Path | None, typer.Option(help="Read the anchor from the git note on HEAD here")] = None,
    registry: Annotated[bool, typer.Option(help="Also ask each registry that it still serves every pushed digest")]
    = True,
) -> None:
    """Check the chain and every signature, each image push's SLSA provenance (and, with --registry,
    that the registry serves that digest); with an anchor, that nothing was cut from the end."""
    try:
        anchored: dict[str, Any] | None = None
        if anchor_git is not None:
            anchor_json = _git("notes", f"--ref={NOTES_REF}", "show", "HEAD", repo=anchor_git)
        if anchor_json is not None:
            try:
                anchored = json.loads(anchor_json)
            except ValueError:
                raise KaizenError(f"anchor {anchor_json!r} is not JSON") from None
        records = trail.verify(path, anchored)
        pushes = provenance.verify_pushes(records, path, registry_check=registry)
    except KaizenError as error:
        raise _fail(error) from None
    err.print(f"[green]ok[/] {len(records)} records, chain and signatures verified, {pushes} image provenance"
              + (f", anchored at {anchored['seq']}" if anchored else ""))


def lineage(
    image: Annotated[str, typer.Argument(help="REGISTRY/REPO@sha256:...")],
    store: Annotated[Path | None, typer.Option(help="Package store (<store>/<name>/<version>)")] = None,
    openlineage: Annotated[Path | None, typer.Option(help="Also write OpenLineage run events (JSON lines) here")]
    = None,
    path: TrailOption = None,
) -> None:
    """Walk image -> package -> training run -> data -> parent version, from the audit trail."""
    from model_packages.audit.lineage import lineage_command

    try:
        nodes = lineage_command(image, store, openlineage, path)
    except KaizenError as error:
        raise _fail(error) from None
    typer.echo(json.dumps(nodes, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.command("lineage")(lineage)
