"""Score files chunk by chunk with the server's schema and runner; resumable, constant memory.

Layout of `out`:
    manifest.json                    the run: model, chunk size, inputs, chunks done (rewritten atomically)
    predictions/<k>-<stem>/<i>.csv   `row,prediction[,p_<label>...]` for chunk i of input k
    rejects/<k>-<stem>/<i>.jsonl     `{"input", "row", "reason"}` per row refused (only when there are any)

A chunk's files are written to a temporary name and renamed, then the manifest records the chunk:
a run killed at any point and started again skips the chunks recorded, redoes the rest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.batch.readers import Bad, BatchError, chunks, input_format
from model_packages.errors import RequestError
from model_packages.serving.codecs import to_json_values
from model_packages.serving.runner import Runner, load_runner
from model_packages.serving.schema import InputSchema

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class ChunkResult:
    input_index: int
    chunk: int
    rows: int
    rejects: int
    skipped: bool


@dataclass
class Summary:
    rows: int = 0
    rejects: int = 0
    chunks_scored: int = 0
    chunks_skipped: int = 0
    seconds: float = 0.0
    per_input: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def chunk_dir(kind: str, k: int, path: Path) -> str:
    """`<kind>/<k>-<stem>`: where chunk files of input k go, relative to the output directory."""
    return f"{kind}/{k:03d}-{path.stem}"


def input_record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class BatchJob:
    """One run: the loaded runner, the inputs, the output directory and its manifest."""

    def __init__(self, runner: Runner, inputs: list[Path], out: Path, *, chunk_rows: int = 10_000,
                 probabilities: bool = False) -> None:
        if not isinstance(runner.schema, InputSchema):
            raise BatchError("batch scoring takes tabular models (an `inputs` schema); "
                             f"{runner.manifest.name} has a tensor input")
        if chunk_rows < 1:
            raise BatchError(f"--chunk-rows must be at least 1, got {chunk_rows}")
        if not inputs:
            raise BatchError("give at least one input file")
        for path in inputs:
            input_format(path)
            if not path.is_file():
                raise BatchError(f"{path}: no such file")
        self.runner, self.schema = runner, runner.schema
        self.inputs, self.out, self.chunk_rows = inputs, out, chunk_rows
        self.probabilities = probabilities and runner.manifest.output.probabilities
        self.manifest = self._open_manifest()
        #: labels (or numbers) that need no CSV quoting
        self._plain_labels = not any(set(label) & set(',"\r\n') for label in runner.labels)

    # -- manifest -------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        m = self.runner.manifest
        return {
            "format": FORMAT_VERSION,
            "model": {"name": m.name, "version": m.version, "artifact_sha256": m.artifact_sha256,
                      "serving_sha256": m.serving.artifact_sha256 if m.serving else None},
            "chunk_rows": self.chunk_rows,
            "probabilities": self.probabilities,
            "inputs": [input_record(p) for p in self.inputs],
        }

    def _open_manifest(self) -> dict[str, Any]:
        identity = self._identity()
        path = self.out / MANIFEST
        if path.exists():
            try:
                manifest = json.loads(path.read_text())
            except ValueError as error:
                raise BatchError(f"{path} is not a batch manifest ({error}); use an empty --out") from None
            previous = {k: manifest.get(k) for k in identity}
            if previous != identity:
                changed = next(k for k in identity if previous[k] != identity[k])
                raise BatchError(f"{self.out} holds a run with a different {changed}; "
                                 "use a new --out directory (or empty this one) to start over")
            return manifest
        if self.out.exists() and any(self.out.iterdir()):
            raise BatchError(f"{self.out} is not empty and holds no {MANIFEST}; use a new --out directory")
        return {**identity, "done": {}, "complete": False}

    def _save_manifest(self) -> None:
        _atomic_write(self.out / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    def _dir(self, kind: str, k: int) -> Path:
        return self.out / chunk_dir(kind, k, self.inputs[k])

    # -- scoring --------------------------------------------------------------------------------
    def run(self, on_chunk: Callable[[ChunkResult], None] | None = None) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self._save_manifest()
        for k, path in enumerate(self.inputs):
            done: dict[str, Any] = self.manifest["done"].setdefault(str(k), {})
            skip = {int(i) for i in done}
            for i in sorted(skip):
                result = ChunkResult(k, i, done[str(i)]["rows"], done[str(i)]["rejects"], True)
                summary.chunks_skipped += 1
                if on_chunk:
                    on_chunk(result)
            for i, rows in chunks(path, self.schema, self.chunk_rows, skip):
                scored, rejected = self._score_chunk(k, i, rows)
                done[str(i)] = {"rows": scored, "rejects": rejected}
                self._save_manifest()
                summary.rows += scored
                summary.rejects += rejected
                summary.chunks_scored += 1
                if on_chunk:
                    on_chunk(ChunkResult(k, i, scored, rejected, False))
            summary.per_input.append({"path": str(path), "rows": sum(c["rows"] for c in done.values()),
                                      "rejects": sum(c["rejects"] for c in done.values())})
        summary.seconds = time.perf_counter() - started
        self.manifest["complete"] = True
        self.manifest["totals"] = {"rows": sum(p["rows"] for p in summary.per_input),
                                   "rejects": sum(p["rejects"] for p in summary.per_input)}
        self._save_manifest()
        return summary

    def _score_chunk(self, k: int, i: int, rows: list[Any] | np.ndarray) -> tuple[int, int]:
        first = i * self.chunk_rows
        rejects: list[tuple[int, str]] = []
        good: list[int] = []
        if isinstance(rows, np.ndarray):
            good = list(range(len(rows)))
        else:
            for n, row in enumerate(rows):
                if isinstance(row, Bad):
                    rejects.append((first + n, row.reason))
                else:
                    good.append(n)
        outputs: list[tuple[list[int], np.ndarray, np.ndarray | None]] = []
        self._score(rows, good, first, outputs, rejects)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        labels = self.runner.labels
        writer.writerow(["row", "prediction", *(f"p_{label}" for label in labels if self.probabilities)])
        for index, predicted, proba in sorted(outputs, key=lambda o: o[0][0]):
            values = to_json_values(predicted)
            if proba is None and self._plain_labels:  # nothing to quote: join, 2-3x csv.writer's speed
                out.write("".join([f"{first + n},{v}\n" for n, v in zip(index, values, strict=True)]))
            elif proba is None:
                writer.writerows([first + n, v] for n, v in zip(index, values, strict=True))
            else:
                writer.writerows([first + n, v, *p] for n, v, p in zip(index, values, proba.tolist(), strict=True))
        if rejects:  # first: a chunk whose predictions file exists has its rejects written too
            source = str(self.inputs[k])
            lines = "".join(json.dumps({"input": source, "row": row, "reason": reason}) + "\n"
                            for row, reason in sorted(rejects))
            _atomic_write(self._dir("rejects", k) / f"{i:06d}.jsonl", lines.encode())
        _atomic_write(self._dir("predictions", k) / f"{i:06d}.csv", out.getvalue().encode())
        return len(rows) - len(rejects), len(rejects)

    def _score(self, rows: list[Any] | np.ndarray, index: list[int], first: int,
               outputs: list[tuple[list[int], np.ndarray, np.ndarray | None]], rejects: list[tuple[int, str]]) -> None:
        """Validate and predict `rows[index]` at once; when the server would refuse the batch, split
        it in halves until each refused row stands alone (few validations per bad row, none per good)."""
        if not index:
            return
        try:
            if isinstance(rows, np.ndarray):  # numbers already: the same vectorised checks as the server's
                matrix = self.schema.check(rows[index] if len(index) < len(rows) else rows, field="row")
            else:
                matrix = self.schema.matrix([rows[n] for n in index], field="row")
            predicted = self.runner.predict_array(matrix)
            proba = self.runner.predict_proba(matrix) if self.probabilities else None
        except RequestError as error:
            if len(index) == 1:
                rejects.append((first + index[0], error.message.removeprefix("row[0].").removeprefix("row[0] ")))
                return
            half = len(index) // 2
            self._score(rows, index[:half], first, outputs, rejects)
            self._score(rows, index[half:], first, outputs, rejects)
            return
        outputs.append((index, predicted, proba))


def open_job(package: str | Path, inputs: list[Path], out: Path, *, chunk_rows: int = 10_000,
             probabilities: bool = False, serve_with: str | None = None) -> BatchJob:
    """Load the package as the server does (hash check, compiled serving artifact unless `serve_with`
    is "source", warm-up)."""
    return BatchJob(load_runner(package, serve_with=serve_with), inputs, out, chunk_rows=chunk_rows,
                    probabilities=probabilities)
