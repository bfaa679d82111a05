"""Stream CSV, JSON Lines and Parquet files as chunks of raw rows (numpy + stdlib; pyarrow for Parquet).

A chunk is a list of rows; a row is a list of cell values in the schema's feature order, or a
`Bad` naming why the line could not be read at all (it becomes a reject, never a silent drop).
A CSV chunk of plain numbers is a float matrix instead (parsed by numpy in one call).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.errors import KaizenError
from model_packages.serving.schema import InputSchema

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class BatchError(KaizenError):
    """An input cannot be scored at all (unknown format, unreadable file, header without a feature)."""


@dataclass(frozen=True)
class Bad:
    """A line that could not be turned into a row, and why."""

    reason: str


def input_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BatchError(f"{path}: unknown input format {path.suffix!r}; use .csv, .jsonl/.ndjson or .parquet")
    return fmt


def chunks(path: Path, schema: InputSchema, chunk_rows: int, skip_chunks: set[int]) -> Iterator[tuple[int, list[Any]]]:
    """(chunk index, rows) for every chunk of `path`; chunks in `skip_chunks` are read past, not parsed."""
    fmt = input_format(path)
    reader = {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[fmt]
    yield from reader(path, schema, chunk_rows, skip_chunks)


def _batched(lines: Iterator[Any], chunk_rows: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_rows(path: Path, schema: InputSchema, chunk_rows: int, skip: set[int]) -> Iterator[tuple[int, list[Any]]]:
    """Records are lines (a quoted field may hold commas, not line breaks: such a record is
    refused as a short row, never dropped)."""
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            first = next((line for line in handle if line.strip()), None)
            if first is None:
                return
            header = [cell.strip() for cell in next(csv.reader([first]))]
        except (csv.Error, UnicodeDecodeError) as error:
            raise BatchError(f"{path}: cannot read the CSV header: {error}") from None
        missing = [n for n, s in zip(schema.names, schema.specs, strict=True) if s.required and n not in header]
        if missing:
            raise BatchError(f"{path}: the CSV header lacks required feature {missing[0]!r} "
                             f"(header: {', '.join(header)})")
        order = [header.index(n) if n in header else -1 for n in schema.names]
        width = len(header)
        index = -1
        try:
            for index, chunk in enumerate(_batched((line for line in handle if line.strip()), chunk_rows)):
                if index in skip:
                    continue
                numeric = _numeric_chunk(chunk, order, width, schema)
                if numeric is not None:
                    yield index, numeric
                else:
                    yield index, [_csv_row(r, order, width, schema) for r in csv.reader(chunk)]
        except (csv.Error, UnicodeDecodeError) as error:
            raise BatchError(f"{path}: cannot read CSV after chunk {index}: {error}") from None


def _numeric_chunk(lines: list[str], order: list[int], width: int, schema: InputSchema) -> Any:
    """A whole chunk of plain numbers parsed by numpy's C reader at once (the common case), else
    None and the row-by-row path finds the odd cells (empty, true/false, text, quotes, a short row)."""
    if schema.string_cols or -1 in order or any('"' in line for line in lines):
        return None
    try:
        array = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if array.shape != (len(lines), width):
        return None
    return array if order == list(range(width)) else array[:, order]


def _csv_row(record: list[str], order: list[int], width: int, schema: InputSchema) -> list[Any] | Bad:
    if len(record) != width:
        return Bad(f"has {len(record)} values; the header has {width}")
    row: list[Any] = []
    for j, k in enumerate(order):
        cell = record[k].strip() if k >= 0 else ""
        if cell == "":
            row.append(None)
        elif j in schema.string_cols:
            row.append(cell)
        elif cell.lower() in ("true", "false"):
            row.append(cell.lower() == "true")
        else:
            try:
                row.append(float(cell))
            except ValueError:
                return Bad(f"{schema.names[j]}: {cell[:40]!r} is not a number")
    return row


def _jsonl_rows(path: Path, schema: InputSchema, chunk_rows: int, skip: set[int]) -> Iterator[tuple[int, list[Any]]]:
    with path.open("rb") as handle:
        lines = (line for line in handle if line.strip())
        for index, chunk in enumerate(_batched(lines, chunk_rows)):
            if index in skip:
                continue
            yield index, [_json_row(line, schema) for line in chunk]


def _json_row(line: bytes, schema: InputSchema) -> Any:
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return Bad(f"not valid JSON: {error}")
    if isinstance(value, dict):
        unknown = [k for k in value if k not in schema.index]
        if unknown:
            return Bad(f"unknown feature {unknown[0]!r}; expected {', '.join(schema.names)}")
        missing = [s.name for s in schema.specs if s.required and s.name not in value]
        if missing:
            return Bad(f"missing required feature {missing[0]!r}")
        return [value.get(name) for name in schema.names]
    if isinstance(value, list):
        return value
    return Bad(f"expected an object keyed by feature name or a list of {schema.width} values")


def _parquet_rows(path: Path, schema: InputSchema, chunk_rows: int, skip: set[int]) -> Iterator[tuple[int, list[Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchError(f"{path}: reading Parquet needs pyarrow, which this environment lacks; "
                         "convert to CSV or JSON Lines") from None
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as error:
        raise BatchError(f"{path}: not a readable Parquet file: {error}") from None
    columns = parquet.schema_arrow.names
    missing = [s.name for s in schema.specs if s.required and s.name not in columns]
    if missing:
        raise BatchError(f"{path}: no column for required feature {missing[0]!r} (columns: {', '.join(columns)})")
    present = [n for n in schema.names if n in columns]
    for index, batch in enumerate(parquet.iter_batches(batch_size=chunk_rows, columns=present)):
        if index in skip:
            continue
        data = {name: batch.column(name).to_pylist() for name in present}
        yield index, [[data[n][i] if n in data else None for n in schema.names] for i in range(batch.num_rows)]


def count_chunks(path: Path, chunk_rows: int) -> int:
    """How many chunks `path` holds (for a progress bar): Parquet's row count, else lines (one
    pass in 1 MiB blocks; a CSV's header line aside)."""
    fmt = input_format(path)
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(path).metadata.num_rows
        except (ImportError, OSError, ValueError):
            return 0
    else:
        rows, last = 0, b"\n"
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                rows += block.count(b"\n")
                last = block[-1:]
        rows += last != b"\n"
        rows -= fmt == "csv"
    return -(-max(rows, 0) // chunk_rows)
