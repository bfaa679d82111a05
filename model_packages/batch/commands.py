"""`kaizen batch PKG INPUT... --out DIR`: score files with the server's validation and model."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from model_packages.errors import KaizenError

err = Console(stderr=True)


def batch(
    package: Annotated[Path, typer.Argument(help="Model package directory")],
    inputs: Annotated[list[Path], typer.Argument(help="Input files: .csv (header row), .jsonl, .parquet")],
    out: Annotated[Path, typer.Option("--out", help="Output directory; run again to resume")],
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per chunk (memory is bounded by it)")] = 10_000,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Add p_<label> columns")] = False,
    audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Record the run in the audit trail")] = True,
    serve_with: Annotated[str, typer.Option("--serve-with", envvar="KAIZEN_SERVE_WITH",
                                            help="compiled (the serving artifact) or source")] = "compiled",
) -> None:
    """Score files in chunks: predictions/ and rejects/ (with the reason) under --out, resumable."""
    from model_packages.batch.job import ChunkResult, open_job
    from model_packages.batch.readers import count_chunks

    try:
        job = open_job(package, inputs, out, chunk_rows=chunk_rows, probabilities=probabilities,
                       serve_with=serve_with)
        sizes = [p.stat().st_size for p in inputs]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("rows {task.fields[rows]:,} rejects {task.fields[rejects]:,}"),
                      TimeElapsedColumn(), console=err, transient=False) as progress:
            total = sum(count_chunks(p, chunk_rows) for p in inputs) or None  # blank lines make it an upper bound
            task = progress.add_task(f"{job.runner.manifest.name} chunks", total=total, rows=0, rejects=0)
            totals = {"rows": 0, "rejects": 0}

            def on_chunk(result: ChunkResult) -> None:
                totals["rows"] += result.rows
                totals["rejects"] += result.rejects
                progress.update(task, advance=1, rows=totals["rows"], rejects=totals["rejects"])

            summary = job.run(on_chunk)
            progress.update(task, total=progress.tasks[task].completed)
    except KaizenError as error:
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from None
    record = {
        "model": job.runner.manifest.name, "version": job.runner.manifest.version,
        "artifact_sha256": job.runner.manifest.artifact_sha256,
        "inputs": [{"path": str(p), "bytes": s} for p, s in zip(inputs, sizes, strict=True)],
        "out": str(out), "rows": job.manifest["totals"]["rows"], "rejects": job.manifest["totals"]["rejects"],
        "rows_per_second": round(summary.rows_per_second, 1),
    }
    if audit:
        from model_packages.audit import trail

        trail.append("batch_run", subject=f"{record['model']}:{record['version']}", actor=getpass.getuser(), **record)
    typer.echo(json.dumps(record))


def register(app: typer.Typer) -> None:
    app.command("batch")(batch)
