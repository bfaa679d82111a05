"""`kaizen baseline export` and `kaizen drift report`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model_packages.errors import KaizenError

err = Console(stderr=True)
out_console = Console()

baseline_app = typer.Typer(help="The package's training baseline, for other tools.", no_args_is_help=True)
drift_app = typer.Typer(help="Drift of captured traffic against the package baseline.", no_args_is_help=True)


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=1)


@baseline_app.command("export")
def export(
    package: Annotated[Path, typer.Argument(help="Model package directory")],
    out: Annotated[Path, typer.Option("--out", help="Directory for statistics.json and constraints.json")],
    fmt: Annotated[str, typer.Option("--format", help="sagemaker: Model Monitor's baseline files")] = "sagemaker",
) -> None:
    """Write the baseline as SageMaker Model Monitor's statistics.json and constraints.json."""
    from model_packages.manifest import read_manifest
    from model_packages.report.monitor import export_sagemaker

    if fmt != "sagemaker":
        raise _fail(KaizenError(f"--format {fmt!r}: the supported format is sagemaker"))
    try:
        paths = export_sagemaker(read_manifest(package), out)
    except KaizenError as error:
        raise _fail(error) from None
    for path in paths:
        out_console.print(f"wrote {path}")


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise KaizenError(f"{option} {value!r} is not an ISO-8601 time (e.g. 2026-12-03T10:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@drift_app.command("report")
def report(
    package: Annotated[Path, typer.Argument(help="Model package directory (only its baseline is read)")],
    captured: Annotated[list[Path], typer.Argument(help="JSON Lines (rows or capture records), CSV, Parquet, "
                                                        "or capture directories")],
    out: Annotated[Path, typer.Option("--out", help="The HTML report; report.json is written beside it")] = Path(
        "report.html"),
    since: Annotated[str | None, typer.Option(help="Only capture records at or after this time (ISO-8601)")] = None,
    until: Annotated[str | None, typer.Option(help="Only capture records at or before this time (ISO-8601)")] = None,
    false_alarm_days: Annotated[float, typer.Option(
        help="Expected days between false alarms (KAIZEN_DRIFT_FALSE_ALARM_DAYS)")] = 30.0,
    window_seconds: Annotated[float, typer.Option(
        help="The runtime's drift window (KAIZEN_DRIFT_WINDOW_SECONDS)")] = 3600.0,
    min_rows: Annotated[int, typer.Option(help="No verdict below this many rows (KAIZEN_DRIFT_MIN_ROWS)")] = 100,
    alpha: Annotated[float | None, typer.Option(help="False-alarm probability of this one check "
                                                     "(default from the two options above)")] = None,
) -> None:
    """Compare captured rows with the package baseline: report.html (charts, statistics, verdict) and report.json."""
    from model_packages.report.drift_report import build, load_package, write

    try:
        from model_packages.drift import per_window_alpha

        if alpha is None and (false_alarm_days <= 0 or window_seconds <= 0):
            raise KaizenError("--false-alarm-days and --window-seconds must be positive")
        level = alpha if alpha is not None else per_window_alpha(false_alarm_days, window_seconds)
        if not 0 < level < 1:
            raise KaizenError(f"--alpha {level} must be between 0 and 1")
        manifest = load_package(package)
        numbers = build(manifest, captured, alpha=level, min_rows=min_rows, since=_when(since, "--since"),
                        until=_when(until, "--until"))
        html_path, json_path = write(numbers, out)
    except KaizenError as error:
        raise _fail(error) from None
    verdict = numbers["verdict"]
    state = {True: "DRIFT", False: "no drift", None: "no verdict"}[verdict.get("alarm")]
    out_console.print(f"{numbers['rows']} rows: {state} -> {html_path}, {json_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(baseline_app, name="baseline")
    app.add_typer(drift_app, name="drift")
