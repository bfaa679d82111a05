"""Columnar readers of captured or exported rows: Parquet, CSV, JSON Lines (plain rows, Kaizen capture
records, SageMaker data-capture records), and capture directories over a time range.

Every reader yields `Batch`es of numpy columns (float64 for numbers, object for strings) read with
pyarrow (Parquet, CSV and JSON Lines are parsed in C, in blocks; Parquet and CSV stream in one pass,
parsed on a thread ahead of the counting, a plain CSV in byte blocks that pyarrow parses on every
core), never row by row in Python; only
SageMaker records, whose payload is a JSON string per request, parse one payload per request.
Every problem is one `ReportInputError` naming the file and the line or column.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from queue import Full, Queue
from typing import Any

import numpy as np

from model_packages.errors import KaizenError

BLOCK = 1 << 24  # bytes per CSV / JSON block
CSV_BLOCK = 1 << 25  # bytes of a plain CSV parsed at once, on every core
CSV_CHUNK = 1 << 22  # bytes per parsing task within a CSV block
PARQUET_BATCH = 262_144
QUOTE = ord('"')
_OPENS = np.zeros(256, dtype=bool)  # the bytes after which a quote opens a value: `,`, line ends, a quote
_OPENS[list(b',\n\r"')] = True
PREFETCH = 2  # batches parsed ahead of the counting
PREDICTION_COLUMNS = ("__prediction__", "prediction", "predictions")


class ReportInputError(KaizenError):
    """A captured or exported file the report cannot use (names the file, line or column)."""


@dataclass(frozen=True)
class Coded:
    """A string column as dictionary codes (-1: missing) and the distinct values they index."""

    codes: np.ndarray
    values: list[Any]

    def __len__(self) -> int:
        return int(self.codes.size)


@dataclass
class Batch:
    columns: dict[str, np.ndarray | Coded]
    predictions: np.ndarray | Coded | None
    rows: int
    first_time: str | None = None
    last_time: str | None = None


@dataclass(frozen=True)
class Wanted:
    """The columns the counters need and their kinds ("categorical" columns are read as strings)."""

    columns: list[str]
    strings: set[str]
    since: str | None = None  # ISO-8601 UTC bounds on capture record times (inclusive)
    until: str | None = None


def _compute() -> Any:
    """pyarrow.compute (its functions are generated at import, unknown to type checkers)."""
    import importlib

    return importlib.import_module("pyarrow.compute")


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand(paths: Sequence[Path], since: datetime | None) -> list[Path]:
    """Files named on the command line; a directory means every complete capture file under it
    (`*.jsonl`, not hidden `.partial` files) last written at or after `since`."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.jsonl") if not p.name.startswith("."))
            if since is not None:
                found = [p for p in found if p.stat().st_mtime >= since.timestamp()]
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ReportInputError(f"{path}: no such file or directory")
    return out


def read(path: Path, wanted: Wanted) -> Iterator[Batch]:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        yield from prefetch(_parquet(path, wanted))
    elif suffix in (".csv", ".csv.gz"):
        yield from prefetch(_csv(path, wanted))
    elif suffix in (".jsonl", ".json", ".ndjson", ".jsonl.gz"):
        yield from _jsonl(path, wanted)
    else:
        raise ReportInputError(f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet")


def prefetch(batches: Iterator[Batch], depth: int = PREFETCH) -> Iterator[Batch]:
    """`batches`, parsed on a thread of their own up to `depth` ahead of the consumer: pyarrow parses
    (and numpy counts) with the GIL released, so reading the next batch overlaps counting this one.
    Order and errors are those of `batches`; closing the generator stops the thread."""
    queue: Queue[tuple[Batch | None, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[Batch | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put((batch, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put((None, error))
            return
        put((None, None))

    thread = threading.Thread(target=produce, name="kaizen-report-reader", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = queue.get()
            if error is not None:
                raise error
            if batch is None:
                return
            yield batch
    finally:
        stop.set()
        thread.join()


# -- plain tables ---------------------------------------------------------------------------------
def _from_table(path: Path, table: Any, wanted: Wanted, where: str = "") -> Batch:
    names = set(table.column_names)
    missing = [c for c in wanted.columns if c not in names]
    if missing:
        raise ReportInputError(f"{path}{where}: no column {missing[0]!r} (the package's inputs are "
                               f"{', '.join(wanted.columns)})")
    columns = {name: _numpy(path, name, table.column(name), name in wanted.strings) for name in wanted.columns}
    prediction = next((c for c in PREDICTION_COLUMNS if c in names), None)
    predictions = None
    if prediction is not None:
        predictions = _predictions(table.column(prediction))
    return Batch(columns, predictions, table.num_rows)


def _predictions(column: Any) -> np.ndarray | Coded:
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
        return _coded(column)
    pc = _compute()
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _coded(column: Any) -> Coded:
    """Dictionary-encode a string column in C: rows become small integer codes."""
    import pyarrow as pa

    pc = _compute()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return Coded(codes, encoded.dictionary.to_pylist())


def _numpy(path: Path, name: str, column: Any, strings: bool) -> np.ndarray | Coded:
    import pyarrow as pa
    pc = _compute()

    kind = column.type
    if strings:
        if not pa.types.is_string(kind) and not pa.types.is_large_string(kind) and not pa.types.is_dictionary(kind):
            column = pc.cast(column, pa.string())
        return _coded(column)
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            values = column.to_numpy(zero_copy_only=False)
            for i, value in enumerate(values):
                if value is not None:
                    try:
                        float(value)
                    except ValueError:
                        raise ReportInputError(f"{path}: column {name!r}, row {i + 1}: {str(value)[:40]!r} is not "
                                               "a number") from None
    raise ReportInputError(f"{path}: column {name!r} holds {kind}, not numbers")


def _parquet(path: Path, wanted: Wanted) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise ReportInputError(f"{path}: not a Parquet file: {error}") from None
    names = set(handle.schema_arrow.names)
    missing = [c for c in wanted.columns if c not in names]
    if missing:
        raise ReportInputError(f"{path}: no column {missing[0]!r} (the package's inputs are "
                               f"{', '.join(wanted.columns)})")
    read_columns = wanted.columns + [c for c in PREDICTION_COLUMNS if c in names][:1]
    for batch in handle.iter_batches(batch_size=PARQUET_BATCH, columns=read_columns):
        yield _from_table(path, pa.Table.from_batches([batch]), wanted)


def _csv(path: Path, wanted: Wanted) -> Iterator[Batch]:
    """A plain `.csv` in byte blocks cut at the end of a row (`_row_end`), each parsed by pyarrow on
    every core; a block where that end cannot be proven hands the rest of the file, from the block's
    first row on, to pyarrow's one-thread streaming reader, as do compressed files. Memory stays a few
    blocks whatever the file's size."""
    import pyarrow as pa

    types: dict[str, Any] = {name: pa.string() for name in wanted.strings}
    if path.suffix.lower() != ".csv":
        yield from _csv_stream(path, wanted, types)
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as error:
        raise ReportInputError(f"{path}: cannot read CSV: {error}") from None
    with handle:
        header = handle.readline(CSV_BLOCK)
        if not header.strip() or _row_end(header, len(header)) != len(header):  # empty, or an end not proven
            yield from _csv_stream(path, wanted, types)
            return
        names = _csv_parse(path, header, None, types).column_names
        offset, first = len(header), True
        block = bytearray(CSV_BLOCK)  # reused: a parsed table holds no reference to its text
        while True:
            size = handle.readinto(block)
            if not size:
                return
            cut = _row_end(block, size, last=size < CSV_BLOCK)
            if cut == 0:  # a row longer than a block, or quotes the cut cannot follow: stream from here
                yield from _csv_stream(path, wanted, types, names, offset)
                return
            if cut < size:
                handle.seek(offset + cut)
            offset += cut
            table = _csv_parse(path, memoryview(block)[:cut], names, types)
            if first:  # later blocks get the first one's column types, as the streaming reader does
                first = False
                types.update({field.name: pa.float64() if pa.types.is_integer(field.type) else field.type
                              for field in table.schema if field.name not in types
                              and not pa.types.is_null(field.type)})
            yield _from_table(path, table, wanted)


def _row_end(data: bytes | bytearray, size: int, last: bool = False) -> int:
    """Where the last complete row of `data[:size]` (which starts a row) ends: after a newline outside
    quotes, or `size` if `last`; 0 if unknown. A newline is outside quotes when an even number of
    quote characters precede it, which holds as pyarrow parses (a quote opens a value only at a
    field's start, `""` inside one is a quote) when every quote that parity says opens a value is at
    a field's start (after `,`, a line end or the block's start) or right after the quote before it."""
    view = np.frombuffer(data, dtype=np.uint8, count=size)
    if data.find(b'"', 0, size) >= 0:
        quotes = np.flatnonzero(view == QUOTE)
        opening = quotes[0::2]
        if not _OPENS[view[opening[opening > 0] - 1]].all():
            return 0
        if last:
            return size
        end = size
        while (end := data.rfind(b"\n", 0, end)) >= 0:
            if int(np.searchsorted(quotes, end)) % 2 == 0:
                return end + 1
        return 0
    return size if last else data.rfind(b"\n", 0, size) + 1


def _csv_parse(path: Path, data: bytes | memoryview, names: list[str] | None, types: dict[str, Any]) -> Any:
    """One block of rows (`names`: the header's columns; None: the block starts with the header)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(pa.py_buffer(data),
                             read_options=pcsv.ReadOptions(use_threads=True, block_size=CSV_CHUNK,
                                                           column_names=names),
                             convert_options=_csv_convert(names, types))
    except pa.ArrowException as error:
        raise ReportInputError(f"{path}: {_arrow_message(error)}") from None


def _csv_convert(names: list[str] | None, types: dict[str, Any]) -> Any:
    import pyarrow.csv as pcsv

    known = types if names is None else {k: v for k, v in types.items() if k in names}
    return pcsv.ConvertOptions(column_types=known, strings_can_be_null=True)


def _csv_stream(path: Path, wanted: Wanted, types: dict[str, Any], names: list[str] | None = None,
                offset: int = 0) -> Iterator[Batch]:
    """pyarrow's one-pass streaming reader, from byte `offset` (the start of a row; `names`: the
    header's columns, when the header lies before `offset`)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        source: Any = path
        if offset:
            source = pa.OSFile(str(path))
            source.seek(offset)
        reader = pcsv.open_csv(source, read_options=pcsv.ReadOptions(block_size=BLOCK, column_names=names),
                               convert_options=_csv_convert(names, types))
    except (OSError, pa.ArrowException) as error:
        raise ReportInputError(f"{path}: cannot read CSV: {_arrow_message(error)}") from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowException as error:
            raise ReportInputError(f"{path}: {_arrow_message(error)}") from None
        yield _from_table(path, pa.Table.from_batches([batch]), wanted)


def _arrow_message(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# -- JSON Lines ------------------------------------------------------------------------------------
def _jsonl(path: Path, wanted: Wanted) -> Iterator[Batch]:
    """Plain rows, Kaizen capture records (`inputs` columns) or SageMaker records (`captureData`)."""
    import pyarrow as pa
    import pyarrow.json as pjson

    first = _first_record(path)
    if first is None:
        return
    if "captureData" in first:
        yield from _sagemaker(path, wanted)
        return
    try:
        table = pjson.read_json(path, read_options=pjson.ReadOptions(block_size=BLOCK))
    except pa.ArrowException:
        _find_bad_line(path)
        raise
    if "inputs" in first and isinstance(first["inputs"], dict):
        yield _kaizen_capture(path, table, wanted)
        return
    yield _from_table(path, table, wanted)


def _first_record(path: Path) -> dict[str, Any] | None:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise ReportInputError(f"{path}:{number}: not valid JSON: {error}") from None
                if not isinstance(record, dict):
                    raise ReportInputError(f"{path}:{number}: a JSON object is expected, got {type(record).__name__}")
                return record
    return None


def _find_bad_line(path: Path) -> None:
    """pyarrow could not parse the file: name the first line that is not a JSON object."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ReportInputError(f"{path}:{number}: not valid JSON: {error}") from None
            if not isinstance(record, dict):
                raise ReportInputError(f"{path}:{number}: a JSON object is expected, got {type(record).__name__}")
    raise ReportInputError(f"{path}: the records do not share one shape (a field changes type between lines)")


def _kaizen_capture(path: Path, table: Any, wanted: Wanted) -> Batch:
    import pyarrow as pa
    pc = _compute()

    if "time" not in table.column_names or "inputs" not in table.column_names:
        raise ReportInputError(f"{path}: capture records need `time` and `inputs`")
    times = table.column("time")
    keep = None
    if wanted.since is not None:
        keep = pc.greater_equal(times, wanted.since)
    if wanted.until is not None:
        upper = pc.less_equal(times, wanted.until)
        keep = upper if keep is None else pc.and_(keep, upper)
    if keep is not None:
        table = table.filter(keep)
    if table.num_rows == 0:
        return Batch({c: np.zeros(0) for c in wanted.columns}, None, 0)
    inputs = table.column("inputs").combine_chunks()
    fields = {inputs.type.field(i).name for i in range(inputs.type.num_fields)}
    missing = [c for c in wanted.columns if c not in fields]
    if missing:
        raise ReportInputError(f"{path}: capture records have no input {missing[0]!r} (a sensitive feature is "
                               "never captured; the package's inputs are " + ", ".join(wanted.columns) + ")")
    flat = {}
    lengths = None
    for name in wanted.columns:
        values = inputs.field(name)
        if not pa.types.is_list(values.type) and not pa.types.is_large_list(values.type):
            raise ReportInputError(f"{path}: input {name!r} is not a list of values per record")
        this = pc.list_value_length(values)
        if lengths is None:
            lengths = this
        elif not pc.all(pc.equal(lengths, this)).as_py():
            raise ReportInputError(f"{path}: input {name!r} has another row count than the other inputs")
        flat[name] = _numpy(path, name, pc.list_flatten(values), name in wanted.strings)
    predictions = None
    if "predictions" in table.column_names:
        predictions = _predictions(pc.list_flatten(table.column("predictions").combine_chunks()))
    rows = len(next(iter(flat.values()))) if flat else 0
    if predictions is not None and len(predictions) != rows:
        predictions = None
    first = pc.min(times if keep is None else table.column("time")).as_py()
    last = pc.max(table.column("time")).as_py()
    return Batch(flat, predictions, rows, first, last)


def _sagemaker(path: Path, wanted: Wanted) -> Iterator[Batch]:
    """SageMaker data-capture records: the request and response payloads are strings to parse."""
    rows: list[list[Any]] = []
    predictions: list[Any] = []
    complete = True
    times: list[str] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                capture = record["captureData"]
                when = record.get("eventMetadata", {}).get("inferenceTime")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ReportInputError(f"{path}:{number}: not a SageMaker data-capture record "
                                       "(captureData/eventMetadata)") from None
            if not _in_range(when, wanted):
                continue
            got = _payload_rows(path, number, capture.get("endpointInput"), wanted.columns)
            answers = _payload_predictions(capture.get("endpointOutput"))
            if answers is None or len(answers) != len(got):
                complete = False
            else:
                predictions.extend(answers)
            rows.extend(got)
            if when:
                times.append(_norm_time(when))
    columns: dict[str, np.ndarray | Coded] = {}
    for k, name in enumerate(wanted.columns):
        values = [r[k] for r in rows]
        if name in wanted.strings:
            columns[name] = np.array([None if v is None else str(v) for v in values], dtype=object)
        else:
            try:
                columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            except (TypeError, ValueError):
                raise ReportInputError(f"{path}: input {name!r} holds values that are not numbers") from None
    yield Batch(columns, np.array(predictions, dtype=object) if complete and predictions else None, len(rows),
                min(times) if times else None, max(times) if times else None)


def _norm_time(value: str) -> str:
    return value if "." in value else value.replace("Z", ".000000Z")


def _in_range(when: str | None, wanted: Wanted) -> bool:
    if when is None or (wanted.since is None and wanted.until is None):
        return True
    value = _norm_time(when)
    return (wanted.since is None or value >= wanted.since) and (wanted.until is None or value <= wanted.until)


def _decode(part: Any) -> tuple[str, str] | None:
    if not isinstance(part, dict) or "data" not in part:
        return None
    data, encoding = part["data"], str(part.get("encoding", "JSON")).upper()
    kind = str(part.get("observedContentType", "application/json")).split(";")[0].strip().lower()
    if encoding == "BASE64":
        data = base64.b64decode(data).decode("utf-8")
        encoding = "CSV" if "csv" in kind else "JSON"
    return encoding, data


def _payload_rows(path: Path, number: int, part: Any, names: list[str]) -> list[list[Any]]:
    decoded = _decode(part)
    if decoded is None:
        raise ReportInputError(f"{path}:{number}: the record has no endpointInput data")
    encoding, data = decoded
    if encoding == "CSV":
        return [list(r) for r in csv.reader(io.StringIO(data)) if r]
    try:
        body = json.loads(data)
    except ValueError as error:
        raise ReportInputError(f"{path}:{number}: endpointInput data is not valid JSON: {error}") from None
    instances = body
    if isinstance(body, dict):
        instances = next((body[k] for k in ("instances", "dataframe_records", "inputs") if k in body), None)
        if instances is None and "dataframe_split" in body:
            split = body["dataframe_split"]
            instances = [dict(zip(split["columns"], r, strict=False)) for r in split["data"]]
    if not isinstance(instances, list):
        raise ReportInputError(f"{path}:{number}: endpointInput data holds no instances")
    out = []
    for row in instances:
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            if missing:
                raise ReportInputError(f"{path}:{number}: an instance has no feature {missing[0]!r}")
            out.append([row[n] for n in names])
        elif isinstance(row, list) and len(row) == len(names):
            out.append(row)
        else:
            raise ReportInputError(f"{path}:{number}: an instance is neither an object nor a list of "
                                   f"{len(names)} values")
    return out


def _payload_predictions(part: Any) -> list[Any] | None:
    decoded = _decode(part)
    if decoded is None:
        return None
    encoding, data = decoded
    if encoding == "CSV":
        return [line.strip() for line in data.splitlines() if line.strip()]
    try:
        body = json.loads(data)
    except ValueError:
        return None
    answers = body.get("predictions") if isinstance(body, dict) else body
    if not isinstance(answers, list):
        return None
    return [a.get("label") if isinstance(a, dict) else a for a in answers]
