"""The `kaizen` command line: package, inspect, serve (images and preview stacks register their own)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

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


def read_training_data(
    path: Path,
    target: str | None,
    categorical: list[str] | None = None,
    drop: list[str] | None = None,
) -> tuple[Any, Any]:
    """Training data as a pandas DataFrame (CSV with a header row, or Parquet), dtypes inferred as
    pandas infers them; `categorical` columns are read as strings, `drop` columns left out, the
    `target` column returned apart."""
    import pandas as pd

    categorical, drop = list(categorical or []), list(drop or [])
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            for name in categorical:
                if name in frame.columns:
                    frame[name] = frame[name].map(lambda v: v if pd.isna(v) else str(v)).astype(object)
        else:
            frame = pd.read_csv(path, dtype=dict.fromkeys(categorical, str), skipinitialspace=True)
    except (OSError, UnicodeDecodeError, ValueError, ImportError) as error:
        raise PackageError(f"cannot read training data {path}: {error}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise PackageError(f"training data {path} needs a header row and at least one data row")
    for option, names in (("--categorical", categorical), ("--drop", drop), ("--target", [target] if target else [])):
        unknown = [n for n in names if n not in frame.columns]
        if unknown:
            raise PackageError(f"{option} {unknown[0]!r}: no such column in {path} "
                               f"(columns: {', '.join(frame.columns)})")
    frame = frame.drop(columns=drop)
    y = frame.pop(target).to_numpy() if target is not None else None
    return frame, y


def _load_estimator(path: Path, trusted: bool) -> tuple[Any, str]:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path, "onnx"
    if suffix in (".ubj", ".json", ".txt"):
        from model_packages.loading import load_booster

        return load_booster(path), suffix[1:]
    if suffix == ".skops":
        from model_packages.loading import load_estimator

        return load_estimator(path, "skops", trusted), "skops"
    if suffix in (".pkl", ".pickle", ".joblib"):
        if not trusted:
            raise PackageError(f"{path.name} is a pickle: it can run arbitrary code when loaded; "
                               "pass --trusted only for a model you trust, or save it with skops/ONNX")
        from model_packages.loading import load_estimator

        fmt = "joblib" if suffix == ".joblib" else "pickle"
        return load_estimator(path, fmt, trusted), fmt
    raise PackageError(f"unknown model file type {suffix!r}: use .skops, .onnx, .ubj/.json (XGBoost), "
                       ".txt (LightGBM), or .pkl/.joblib with --trusted")


@app.command("package")
def package_command(
    name: Annotated[str, typer.Option(help="Package name (lowercase, digits, dashes)")],
    version: Annotated[str, typer.Option(help="Semantic version, e.g. 1.2.0")],
    out: Annotated[Path, typer.Option(help="Directory to write the package to")],
    model: Annotated[Path | None, typer.Argument(help="Fitted model: .skops, .onnx, .ubj/.json (XGBoost), .txt "
                                              "(LightGBM), or .pkl/.joblib with --trusted")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data: CSV with a header row, or Parquet")] = None,
    target: Annotated[str | None, typer.Option(help="Target column in the training data")] = None,
    categorical: Annotated[list[str] | None, typer.Option(help="Read this column as strings (repeatable)")] = None,
    drop: Annotated[list[str] | None, typer.Option(help="Leave this column out (repeatable)")] = None,
    sensitive: Annotated[list[str] | None, typer.Option(
        help="Mark this input sensitive: never captured, never echoed in errors or logs (repeatable)")] = None,
    task: Annotated[str | None, typer.Option(help="classification or regression (inferred)")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated class labels (ONNX classifiers)")] = None,
    trusted: Annotated[bool, typer.Option(help="Allow pickle formats (only for models you trust)")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing package directory")] = False,
    from_mlflow: Annotated[Path | None, typer.Option("--from-mlflow", help="Import an MLflow model directory "
                                                     "(sklearn, xgboost, lightgbm, onnx flavors)")] = None,
) -> None:
    """Build a model package from a fitted model and its training data."""
    from model_packages.package import create_package

    if from_mlflow is not None:
        from model_packages.mlflow_import import package_from_mlflow

        try:
            path = package_from_mlflow(from_mlflow, data=data, target=target, name=name, version=version, out=out,
                                       task=task, labels=labels, trusted=trusted, overwrite=overwrite,
                                       log=console.print)
        except KaizenError as error:
            raise _fail(error) from None
        console.print(f"[green]packaged[/] {name} {version} -> {path} (from MLflow model {from_mlflow})")
        _print_compilation(path)
        return
    if model is None or data is None:
        raise _fail(PackageError("give a model file and --data, or --from-mlflow DIR"))
    try:
        estimator, fmt = _load_estimator(model, trusted)
        columns, y = read_training_data(data, target, categorical, drop)
        label_list = [x.strip() for x in labels.split(",")] if labels else None
        path = create_package(
            estimator, columns, y, out_dir=out, name=name, version=version, artifact_format=fmt,
            task=task, labels=label_list, trusted=trusted, overwrite=overwrite, sensitive=sensitive,
        )
    except KaizenError as error:
        raise _fail(error) from None
    console.print(f"[green]packaged[/] {name} {version} -> {path}")
    _print_compilation(path)


def _print_compilation(path: Path) -> None:
    """Say whether the package got a compiled serving artifact, and why not."""
    from model_packages.manifest import read_manifest

    manifest = read_manifest(path)
    compilation = manifest.compilation
    if compilation is None:
        return
    if compilation.compiled and manifest.serving is not None:
        serving = manifest.serving
        rows = ("rows (training rows, unseen categories, missing values)" if serving.inputs == "columns"
                else "training rows")
        console.print(f"compiled: {serving.artifact} ({compilation.compiler}), matches the model on "
                      f"{serving.parity_rows} {rows} (max abs diff {serving.max_abs_diff:.2g})")
    else:
        console.print(f"[yellow]not compiled:[/] {compilation.reason}; {manifest.framework} serves the model")


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
    table = Table("feature", "type", "required", "range / categories", "missing ok", "unseen ok")
    for feature in summary["inputs"]:
        span = feature.get("categories") or f"{feature.get('minimum', '-inf')} .. {feature.get('maximum', 'inf')}"
        kind = feature["dtype"] + (f" ({feature['pandas_dtype']})" if feature.get("pandas_dtype") else "")
        table.add_row(feature["name"], kind,
                      str(feature.get("required", True)), str(span), str(feature.get("nullable", False)),
                      str(feature.get("allow_unknown", False)) if feature["dtype"] == "categorical" else "")
    if summary.get("tensor_input"):
        tensor = summary["tensor_input"]
        console.print(f"tensor input {tensor['name']} {tensor['datatype']} {tensor['shape']} (-1: any size)")
    else:
        console.print(table)
    if summary.get("model_input") == "dataframe":
        console.print("model input: a pandas DataFrame with these columns, in this order")
    if summary["labels"]:
        console.print(f"labels: {', '.join(str(x) for x in summary['labels'])}")
    console.print(f"metrics: {summary['metrics']}  training rows: {summary['training_rows']}")
    compilation = summary.get("compilation")
    if compilation:
        console.print(f"compiled: {compilation['compiled']}"
                      + (f" ({compilation['compiler']})" if compilation.get("compiler") else "")
                      + (f"; reason: {compilation['reason']}" if compilation.get("reason") else ""))
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

    for module in (
        "model_packages.image.commands",
        "model_packages.ci.commands",
        "model_packages.audit.commands",
        "model_packages.retrain.commands",
        "model_packages.batch.commands",
        "model_packages.edge.commands",
        "model_packages.report.commands",
    ):
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
