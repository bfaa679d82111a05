"""`kaizen export edge PKG`, `kaizen edge run BUNDLE`, `kaizen edge pull REF`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model_packages.errors import KaizenError

err = Console(stderr=True)
export_app = typer.Typer(help="Export a model package for other targets", no_args_is_help=True)
edge_app = typer.Typer(help="Edge bundles: pull and run on a device", no_args_is_help=True)


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


@export_app.command("edge")
def export_edge(
    package: Annotated[Path, typer.Argument(help="model package directory")],
    out: Annotated[Path | None, typer.Option(help="bundle directory (default build/edge/NAME-VERSION)")] = None,
    registry: Annotated[str | None, typer.Option(help="push the bundle to this registry (host[:port])")] = None,
    quantize: Annotated[bool, typer.Option("--quantize", help="dynamic int8 quantisation (parity recorded)")] = False,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="record the push in the audit trail")] = True,
) -> None:
    """Write the edge bundle (ONNX model, schema, baseline, parity) and push it by digest."""
    from model_packages.edge.bundle import export_bundle
    from model_packages.manifest import read_manifest

    try:
        manifest = read_manifest(package)
        target = out or Path("build") / "edge" / f"{manifest.name}-{manifest.version}"
        info = export_bundle(package, target, quantise=quantize)
        result: dict[str, object] = {"bundle": str(target), "parity": info["parity"],
                                     "quantization": info["quantization"]}
        if registry:
            from model_packages.edge.oci import push_bundle

            pushed = push_bundle(target, registry, audit=audit)
            result |= {"reference": pushed.reference, "pushed": pushed.pushed}
    except KaizenError as error:
        raise _fail(error) from None
    print(json.dumps(result))


@edge_app.command("run")
def edge_run(
    bundle: Annotated[Path, typer.Argument(help="edge bundle directory")],
    rows: Annotated[str, typer.Option("--input", help="JSON Lines rows ('-' for stdin)")],
    out: Annotated[str, typer.Option(help="JSON Lines answers ('-' for stdout)")] = "-",
    probabilities: Annotated[bool, typer.Option("--probabilities")] = False,
) -> None:
    """Score rows with a bundle (what `python -m model_packages.edge run` does on a device)."""
    from model_packages.edge.__main__ import main

    args = ["run", str(bundle), "--input", rows, "--out", out]
    raise typer.Exit(main([*args, "--probabilities"] if probabilities else args))


@edge_app.command("pull")
def edge_pull(
    reference: Annotated[str, typer.Argument(help="REGISTRY/kaizen/NAME/edge@sha256:…")],
    out: Annotated[Path, typer.Option(help="bundle directory")],
) -> None:
    """Pull a bundle by digest (each file checked against its digest and bundle.json)."""
    from model_packages.edge.oci import pull_bundle
    from model_packages.edge.runtime import read_bundle

    try:
        read_bundle(pull_bundle(reference, out))
    except KaizenError as error:
        raise _fail(error) from None
    print(out)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.add_typer(edge_app, name="edge")
