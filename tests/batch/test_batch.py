"""Batch scoring: the server's answers and refusals, every row accounted for, resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model_packages.batch.job import BatchJob
from model_packages.batch.readers import BatchError
from model_packages.serving.runner import Runner, load_runner
from tests.support import ROOT, peak_rss_kb

IRIS = ROOT / "examples" / "iris-classifier"
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
BAD = [  # (CSV cells, the reason the server gives)
    (["1", "2", "abc", "1"], "petal_length: 'abc' is not a number"),
    (["1", "2", "150", "1"], "petal_length: 150 is above the maximum 100"),
    (["1", "2", "3"], "has 3 values; the header has 4"),
    (["1", "", "3", "1"], "sepal_width: missing required feature (null)"),
]


@pytest.fixture(scope="module")
def runner() -> Runner:
    return load_runner(IRIS)


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(0.5, 7.0, (n, 4)), 2)


def _write_csv(path: Path, good: np.ndarray, bad_at: dict[int, list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NAMES)
        g = iter(good.tolist())
        for i in range(len(good) + len(bad_at)):
            writer.writerow(bad_at[i] if i in bad_at else next(g))
    return path


def _predictions(out: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    for part in sorted(out.glob("predictions/*/*.csv")):
        rows.extend(list(csv.reader(part.open()))[1:])
    return rows


def _rejects(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for part in sorted(out.glob("rejects/*/*.jsonl")) for line in part.open()]


def test_csv_scores_like_the_server_and_rejects_with_reasons(tmp_path: Path, runner: Runner) -> None:
    good = _rows(95)
    bad_at = {3: BAD[0][0], 40: BAD[1][0], 41: BAD[2][0], 98: BAD[3][0]}
    source = _write_csv(tmp_path / "in.csv", good, bad_at)
    summary = BatchJob(runner, [source], tmp_path / "out", chunk_rows=16, probabilities=True).run()
    assert (summary.rows, summary.rejects) == (95, 4)
    rejects = _rejects(tmp_path / "out")
    expected_rejects = [(i, reason) for i, (_, reason) in zip(bad_at, BAD, strict=True)]
    assert [(r["row"], r["reason"]) for r in rejects] == expected_rejects
    predicted = _predictions(tmp_path / "out")
    good_index = [i for i in range(99) if i not in bad_at]
    assert [int(p[0]) for p in predicted] == good_index
    expected = runner.predict(runner.schema.matrix(good.tolist()))  # type: ignore[union-attr]
    assert [p[1] for p in predicted] == expected
    proba = runner.predict_proba(good)
    assert proba is not None
    np.testing.assert_allclose(np.array([[float(v) for v in p[2:]] for p in predicted]), proba, rtol=1e-12)


def test_jsonl_and_parquet_give_the_same_answers(tmp_path: Path, runner: Runner) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = _rows(30, seed=1)
    jsonl = tmp_path / "in.jsonl"
    lines = [json.dumps(dict(zip(NAMES, r, strict=True))) for r in good.tolist()]
    lines.insert(5, "{not json")
    lines.insert(9, json.dumps({"sepal_length": 1.0, "colour": "red"}))
    jsonl.write_text("\n".join(lines) + "\n")
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({n: good[:, j] for j, n in enumerate(NAMES)}), parquet, row_group_size=7)
    BatchJob(runner, [jsonl, parquet], tmp_path / "out", chunk_rows=8).run()
    expected = runner.predict(good)
    by_input = {k: [p[1] for p in _predictions_of(tmp_path / "out", k)] for k in (0, 1)}
    assert by_input[0] == expected and by_input[1] == expected
    reasons = [str(r["reason"]) for r in _rejects(tmp_path / "out")]
    assert len(reasons) == 2 and reasons[0].startswith("not valid JSON") and "unknown feature 'colour'" in reasons[1]


def _predictions_of(out: Path, k: int) -> list[list[str]]:
    rows: list[list[str]] = []
    for part in sorted(out.glob(f"predictions/{k:03d}-*/*.csv")):
        rows.extend(list(csv.reader(part.open()))[1:])
    return rows


def test_a_used_output_directory_is_refused_for_another_run(tmp_path: Path, runner: Runner) -> None:
    source = _write_csv(tmp_path / "in.csv", _rows(5), {})
    BatchJob(runner, [source], tmp_path / "out", chunk_rows=2).run()
    with pytest.raises(BatchError, match="different chunk_rows"):
        BatchJob(runner, [source], tmp_path / "out", chunk_rows=3)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(BatchError, match="not empty"):
        BatchJob(runner, [source], tmp_path / "other")
    with pytest.raises(BatchError, match="unknown input format"):
        BatchJob(runner, [tmp_path / "in.txt"], tmp_path / "out3")


def test_resumes_after_sigkill_without_redoing_written_chunks(tmp_path: Path) -> None:
    """A real job process killed with SIGKILL mid-run; the second run skips the chunks recorded
    and the result equals one uninterrupted run."""
    source = _write_csv(tmp_path / "in.csv", _rows(59_999, seed=2), {7: BAD[1][0]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "model_packages.serving", "batch", str(source), "--out", str(out),
           "--chunk-rows", "500", "--model-dir", str(IRIS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for a few chunks, then kill mid-run
            if json.loads(line).get("chunk") == 5:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    done = json.loads((out / "manifest.json").read_text())
    assert not done["complete"] and 6 <= len(done["done"]["0"]) < 120
    first_done = {int(i) for i in done["done"]["0"]}
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("predictions/*/*.csv")}
    time.sleep(0.01)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["chunks_skipped"] == len(first_done) and summary["chunks_scored"] == 120 - len(first_done)
    for i in first_done:  # the chunks recorded were not rewritten
        assert (out / "predictions" / "000-in" / f"{i:06d}.csv").stat().st_mtime_ns == mtimes[f"{i:06d}.csv"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"] == {"rows": 59_999, "rejects": 1}
    rows = _predictions(out)
    assert [int(r[0]) for r in rows] == [i for i in range(60_000) if i != 7]
    assert not list(out.rglob(".*.tmp"))


def test_cli_batch_records_the_run_in_the_audit_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_packages.audit import trail
    from model_packages.cli import app

    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    source = _write_csv(tmp_path / "in.csv", _rows(20), {2: BAD[0][0]})
    result = CliRunner().invoke(app, ["batch", str(IRIS), str(source), "--out", str(tmp_path / "out"),
                                       "--chunk-rows", "10"])
    assert result.exit_code == 0, result.output
    (record,) = trail.read()
    assert record["event"] == "batch_run" and record["model"] == "iris-classifier"
    assert (record["rows"], record["rejects"]) == (20, 1)
    assert "3/3" in result.output  # the progress bar: 21 rows in chunks of 10
    bad = CliRunner().invoke(app, ["batch", str(IRIS), str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 1 and "missing.csv: no such file" in " ".join(bad.output.split()).replace("/ ", "/")


def _peak_rss_kb(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    peak = peak_rss_kb(proc)
    assert proc.returncode == 0
    return peak


def test_memory_stays_flat_whatever_the_input_size(tmp_path: Path) -> None:
    """40x the rows, the same peak: chunks are read, scored and written one at a time."""
    peaks = {}
    for rows in (20_000, 800_000):
        source = tmp_path / f"in-{rows}.csv"
        np.savetxt(source, _rows(rows, seed=3), delimiter=",", fmt="%.2f", header=",".join(NAMES), comments="")
        peaks[rows] = _peak_rss_kb([sys.executable, "-m", "model_packages.serving", "batch", str(source),
                                    "--out", str(tmp_path / f"out-{rows}"), "--chunk-rows", "2000",
                                    "--model-dir", str(IRIS)])
        assert len(_predictions(tmp_path / f"out-{rows}")) == rows
    assert peaks[20_000] > 10_000, peaks  # the poll saw the process
    assert peaks[800_000] - peaks[20_000] < 8_000, f"peak RSS grew with the input: {peaks} kB"
