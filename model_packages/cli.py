"""The `kaizen` command line: package, inspect, serve (images and preview stacks register their own)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from model_packages import __version__
from model_packages.errors import KaizenError, PackageError

app = typer.Typer(
    name="kaizen",
    help="Package ML models into small, safe images and deploy them with Pulumi.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(error: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=1)


def read_training_csv(path: Path, target: str | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columns of a CSV with a header row; numeric columns become floats, others stay strings."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            records = [r for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PackageError(f"cannot read training data {path}: {error}") from None
    if not header or not records:
        raise PackageError(f"training data {path} needs a header row and at least one data row")
    bad = [i for i, r in enumerate(records) if len(r) != len(header)]
    if bad:
        raise PackageError(f"training data {path}: row {bad[0] + 1} has {len(records[bad[0]])} values, "
                           f"the header has {len(header)}")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        raw = [r[j].strip() for r in records]
        try:
            columns[name] = np.array([float(v) if v != "" else np.nan for v in raw])
        except ValueError:
            columns[name] = np.array(raw, dtype=object)
    y = None
    if target is not None:
        if target not in columns:
            raise PackageError(f"target column {target!r} is not in {path} (columns: {', '.join(header)})")
        y = columns.pop(target)
    return columns, y


def _load_estimator(path: Path, trusted: bool) -> tuple[Any, str]:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path, "onnx"
    if suffix == ".skops":
        from model_packages.loading import _load_skops

        return _load_skops(path, trusted), "skops"
    if suffix in (".pkl", ".pickle", ".joblib"):
        if not trusted:
            raise PackageError(f"{path.name} is a pickle: it can run arbitrary code when loaded; "
                               "pass --trusted only for a model you trust, or save it with skops/ONNX")
        from model_packages.loading import _load_pickle

        fmt = "joblib" if suffix == ".joblib" else "pickle"
        return _load_pickle(path, fmt), fmt
    raise PackageError(f"unknown model file type {suffix!r}: use .skops, .onnx, or .pkl/.joblib with --trusted")


@app.command("package")
def package_command(
    model: Annotated[Path, typer.Argument(help="Fitted model: .skops, .onnx, or .pkl/.joblib with --trusted")],
    data: Annotated[Path, typer.Option(help="Training data CSV with a header row")],
    name: Annotated[str, typer.Option(help="Package name (lowercase, digits, dashes)")],
    version: Annotated[str, typer.Option(help="Semantic version, e.g. 1.2.0")],
    out: Annotated[Path, typer.Option(help="Directory to write the package to")],
    target: Annotated[str | None, typer.Option(help="Target column in the training data")] = None,
    task: Annotated[str | None, typer.Option(help="classification or regression (inferred)")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated class labels (ONNX classifiers)")] = None,
    trusted: Annotated[bool, typer.Option(help="Allow pickle formats (only for models you trust)")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing package directory")] = False,
) -> None:
    """Build a model package from a fitted model and its training data."""
    from model_packages.package import create_package

    try:
        estimator, fmt = _load_estimator(model, trusted)
        columns, y = read_training_csv(data, target)
        label_list = [x.strip() for x in labels.split(",")] if labels else None
        path = create_package(
            estimator, columns, y, out_dir=out, name=name, version=version, artifact_format=fmt,
            task=task, labels=label_list, trusted=trusted, overwrite=overwrite,
        )
    except KaizenError as error:
        raise _fail(error) from None
    console.print(f"[green]packaged[/] {name} {version} -> {path}")


@app.command("inspect")
def inspect_command(
    package: Annotated[Path, typer.Argument(help="Model package directory")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    load: Annotated[bool, typer.Option(help="Also load the model and check it against the schema")] = False,
) -> None:
    """Verify a model package and print what it holds."""
    from model_packages.package import describe_package, verify_package

    try:
        if load:
            verify_package(package, load=True)
        summary = describe_package(package)
    except KaizenError as error:
        raise _fail(error) from None
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(f"[bold]{summary['name']}[/] {summary['version']}  "
                  f"{summary['framework']}/{summary['format']}  {summary['task']}")
    console.print(f"artifact {summary['artifact']} ({summary['artifact_bytes']} bytes) "
                  f"sha256 {summary['artifact_sha256']}")
    table = Table("feature", "type", "required", "range / categories")
    for feature in summary["inputs"]:
        span = feature.get("categories") or f"{feature.get('minimum', '-inf')} .. {feature.get('maximum', 'inf')}"
        table.add_row(feature["name"], feature["dtype"], str(feature.get("required", True)), str(span))
    console.print(table)
    if summary["labels"]:
        console.print(f"labels: {', '.join(str(x) for x in summary['labels'])}")
    console.print(f"metrics: {summary['metrics']}  training rows: {summary['training_rows']}")
    lineage = summary["lineage"]
    console.print(f"lineage: data {lineage['data_sha256'][:16]}…  code {lineage.get('code_revision')}  "
                  f"created {lineage['created_at']}")


@app.command("serve")
def serve_command(
    package: Annotated[Path, typer.Argument(help="Model package directory")],
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
) -> None:
    """Serve a model package with the runtime that runs inside every Kaizen image."""
    from model_packages.serving.launch import start
    from model_packages.serving.settings import Settings, SettingsError

    env = dict(os.environ, KAIZEN_MODEL_DIR=str(package), KAIZEN_HOST=host, KAIZEN_PORT=str(port))
    env.pop("PORT", None)
    env.pop("AIP_HTTP_PORT", None)
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        raise _fail(error) from None
    raise typer.Exit(code=start(settings))


@app.command("version")
def version_command() -> None:
    """Print Kaizen's version."""
    console.print(__version__)


def _register_optional() -> None:
    """Commands of the image builder and preview stacks live beside their code."""
    import importlib

    for module in ("model_packages.image.commands", "model_packages.preview_commands"):
        try:
            register = importlib.import_module(module).register
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            continue
        register(app)


_register_optional()


def main() -> None:
    app()
