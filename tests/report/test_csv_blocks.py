"""The CSV reader's byte blocks: cut only at the end of a row (quotes, escaped quotes and newlines
within values), the streaming fallback when a cut cannot be proven, and the line count that prewarms
the calibration."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from model_packages.report import readers
from model_packages.report.drift_report import csv_rows, known_rows
from model_packages.report.readers import Coded, Wanted, read


def _values(column: np.ndarray | Coded) -> list[object]:
    if isinstance(column, Coded):
        return [None if code < 0 else column.values[code] for code in column.codes.tolist()]
    return [None if v != v else v for v in column.tolist()]


def _read(path: Path) -> tuple[int, dict[str, list[object]], list[object]]:
    columns: dict[str, list[object]] = {"a": [], "b": [], "c": []}
    predictions: list[object] = []
    rows = 0
    for batch in read(path, Wanted(["a", "b", "c"], {"b"})):
        rows += batch.rows
        for name, column in batch.columns.items():
            columns[name].extend(_values(column))
        assert batch.predictions is not None
        predictions.extend(_values(batch.predictions))
    return rows, columns, predictions


def _expected(path: Path) -> tuple[int, dict[str, list[object]], list[object]]:
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={"b": pa.string()},
                                                                    strings_can_be_null=True))
    columns: dict[str, list[object]] = {
        name: [float(v) if isinstance(v, int) else v for v in table.column(name).to_pylist()]
        for name in ("a", "b", "c")}
    return table.num_rows, columns, table.column("prediction").to_pylist()


def _rows(n: int, values: list[str], seed: int = 3) -> str:
    rng = random.Random(seed)
    labels = ["x", '"y"']
    lines = ['"a","b","c","prediction"']
    for i in range(n):
        lines.append(f"{i},{rng.choice(values)},{rng.random() if i % 7 else ''},{rng.choice(labels)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("block", [61, 300, 4096, 1 << 25])
@pytest.mark.parametrize("values", [
    ["plain", "", "other"],
    ['"quoted"', '"a, b"', '""', 'plain'],
    ['"x\ny"', '"q""uote\n,"', '"\r\n"', '"a,b"', 'plain', '""""'],  # newlines and quotes inside values
    ['ab"c', 'plain', '"q"'],  # a quote inside an unquoted value: the cut is not proven, the rest streams
])
def test_blocks_give_what_one_whole_file_read_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     block: int, values: list[str]) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(_rows(2000, values), newline="")
    monkeypatch.setattr(readers, "CSV_BLOCK", block)
    got = _read(path)
    assert got == _expected(path)
    assert got[0] == 2000


def test_row_end_follows_quotes() -> None:
    data = b'1,"x\n2",3\n4,"y""\n"\n5,z'
    assert readers._row_end(data, len(data)) == data.index(b'"\n5') + 2
    assert readers._row_end(data, len(data), last=True) == len(data)
    opened = b'1,"x\n2,3\n'
    assert readers._row_end(opened, len(opened)) == 0  # every newline lies within the open quote
    literal = b'1,a"b\n2,3\n'
    assert readers._row_end(literal, len(literal)) == 0  # parity cannot tell: not proven


def test_line_count_prewarms_only_what_it_can_know(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,2\n3,4")
    assert csv_rows(path) == 2
    path.write_text("a,b\n1,2\n3,4\n")
    assert csv_rows(path) == 2
    count = known_rows([path])
    assert callable(count) and count() == 2
    assert known_rows([path, tmp_path / "capture.jsonl"]) == 0
