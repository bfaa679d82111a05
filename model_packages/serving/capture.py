"""Sampled data capture: validated inputs and predictions, written off the request path.

The request path only draws a random number and, for a sampled request, appends references to the
validated matrix and the predictions to a deque bounded in requests and rows (`Capture.offer`: no
thread wake-up). A writer thread drains it every 0.1 s, formats and writes them: to stdout (one JSON
line per request) or to rotating JSON Lines files in a directory,
in Kaizen's record shape or in SageMaker's data-capture shape and layout
(`ENDPOINT/VARIANT/yyyy/mm/dd/hh/*.jsonl`, records with `captureData`/`eventMetadata`), so the drift
report reads both. A full queue, a full disk or any write error drops the sample and counts it
(`kaizen_capture_dropped_total{reason}`); nothing raises into a request.

Files are written under a hidden `.NAME.partial` name and renamed to `NAME` when they reach
`max_file_bytes` or `max_file_seconds` (or the hour changes, in the SageMaker layout): readers only ever
see complete files. After each rotation the oldest complete files are deleted until the directory
holds at most `max_total_bytes`. Features marked `sensitive: true` are left out of every record.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.manifest import Manifest
from model_packages.serving.codecs import to_json_values
from model_packages.serving.settings import CaptureSettings

BATCH = 512  # records formatted per pass at most
CHUNK_BYTES = 16 << 10  # bytes per write call at most: a full disk loses only the chunks that did not fit
POLL = 0.1  # seconds between the writer's passes over the queue
PARTIAL = ".partial"

Counter = Callable[[str, int], None]  # (what, n): "written" or a drop reason


_SECOND: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _iso(ts: float) -> str:
    second = int(ts)
    if _SECOND[0] != second:
        _SECOND[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_SECOND[1]}.{int((ts - second) * 1e6):06d}Z"


def _column(values: np.ndarray) -> list[Any]:
    """A matrix column as JSON values (NaN and None as null)."""
    if values.dtype.kind == "f":
        out: list[Any] = values.tolist()
        if np.isnan(values).any():
            out = [None if v != v else v for v in out]
        return out
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in values.tolist()]


class RecordFormatter:
    """Turns (time, request id, route, rows, predictions) into one JSON line, without sensitive features."""

    def __init__(self, manifest: Manifest, layout: str) -> None:
        self.layout = layout
        self.model, self.version = manifest.name, manifest.version
        self.kept = [(i, s.name) for i, s in enumerate(manifest.inputs) if not s.sensitive]
        self.tensor = manifest.tensor_input is not None

    def inputs(self, rows: np.ndarray) -> dict[str, list[Any]]:
        if self.tensor:
            return {"tensor": rows.tolist()}
        if rows.dtype.kind == "f" and not np.isnan(rows).any():  # the common case: one conversion
            columns = rows.T.tolist()
            return {name: columns[i] for i, name in self.kept}
        return {name: _column(rows[:, i]) for i, name in self.kept}

    def line(self, ts: float, request_id: str, route: str, rows: np.ndarray, predictions: np.ndarray) -> str:
        inputs = self.inputs(rows)
        answers = to_json_values(predictions)
        if self.layout == "sagemaker":
            count = rows.shape[0]
            instances = inputs["tensor"] if self.tensor else [
                {name: column[k] for name, column in inputs.items()} for k in range(count)]
            record: dict[str, Any] = {
                "captureData": {
                    "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                      "data": _dumps({"instances": instances}), "encoding": "JSON"},
                    "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                       "data": _dumps({"predictions": answers}), "encoding": "JSON"},
                },
                "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceId": request_id,
                                  "inferenceTime": _iso(ts)[:-8] + "Z"},
                "eventVersion": "0",
                "kaizen": {"model": self.model, "version": self.version, "route": route},
            }
        else:
            record = {"time": _iso(ts), "request_id": request_id, "model": self.model, "version": self.version,
                      "route": route, "rows": int(rows.shape[0]), "inputs": inputs, "predictions": answers}
        return _dumps(record)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


class PartialWrite(OSError):
    """Writing stopped with an error after `written` lines."""

    def __init__(self, written: int) -> None:
        super().__init__(f"write failed after {written} lines")
        self.written = written


class StdoutSink:
    """Whole lines to the runtime's log stream (shares its lock, so lines never interleave)."""

    def __init__(self, write_lines: Callable[[list[str]], None]) -> None:
        self.write_lines = write_lines

    def write(self, lines: list[str], now: float) -> None:
        self.write_lines(lines)

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


class DirectorySink:
    """Rotating JSON Lines files, size-, age- and total-bounded, renamed into place when complete."""

    def __init__(self, settings: CaptureSettings, tag: str) -> None:
        self.settings = settings
        self.root = Path(settings.destination)
        self.tag = tag
        self.fd: int | None = None
        self.path: Path | None = None
        self.size = 0
        self.opened = 0.0
        self.hour = ""
        self.seq = 0

    def _final_name(self, now: float) -> Path:
        stamp = datetime.fromtimestamp(now, UTC)
        self.seq += 1
        if self.settings.layout == "sagemaker":
            folder = self.root / self.settings.endpoint / self.settings.variant / stamp.strftime("%Y/%m/%d/%H")
            name = f"{stamp.strftime('%M-%S')}-{stamp.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            return folder / name
        return self.root / f"capture-{stamp.strftime('%Y%m%dT%H%M%S')}Z-{self.tag}-{self.seq:05d}.jsonl"

    def recover(self, now: float) -> int:
        """Put in place what a killed writer left: `.partial` files older than two rotation periods, cut
        back to their last whole line (a live writer renames its file within one period)."""
        found = 0
        for partial in self.root.rglob("." + "*" + PARTIAL):
            try:
                if now - partial.stat().st_mtime < 2 * self.settings.max_file_seconds:
                    continue
                data = partial.read_bytes()
                whole = data[: data.rfind(b"\n") + 1]
                final = partial.with_name(partial.name[1: -len(PARTIAL)])
                if whole:
                    with open(partial, "r+b") as handle:
                        handle.truncate(len(whole))
                    os.replace(partial, final)
                    found += 1
                else:
                    partial.unlink()
            except OSError:
                continue
        return found

    def _open(self, now: float) -> None:
        if self.seq == 0:
            self.recover(now)
        final = self._final_name(now)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name("." + final.name + PARTIAL)
        self.fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.path, self.size, self.opened = final, 0, now
        self.hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")

    def _due(self, now: float, incoming: int) -> bool:
        if self.fd is None or self.size == 0:
            return False
        if self.size + incoming > self.settings.max_file_bytes or now - self.opened >= self.settings.max_file_seconds:
            return True
        hour = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H")
        return self.settings.layout == "sagemaker" and hour != self.hour

    def rotate(self) -> None:
        """Close the current file and rename it into place (an empty one is removed), then bound the total."""
        if self.fd is None or self.path is None:
            return
        fd, path, size = self.fd, self.path, self.size
        self.fd, self.path = None, None
        partial = path.with_name("." + path.name + PARTIAL)
        try:
            os.close(fd)
        finally:
            if size:
                os.replace(partial, path)
            else:
                partial.unlink(missing_ok=True)
        self._bound_total()

    def _bound_total(self) -> None:
        files = []
        for path in self.root.rglob("*.jsonl"):
            try:
                info = path.stat()
            except OSError:
                continue
            files.append((info.st_mtime, info.st_size, path))
        total = sum(f[1] for f in files)
        for _, size, path in sorted(files):
            if total <= self.settings.max_total_bytes - self.settings.max_file_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def write(self, lines: list[str], now: float) -> None:
        """Append whole lines in chunks of at most CHUNK_BYTES, rotating whenever the next chunk would pass
        max_file_bytes."""
        piece: list[bytes] = []
        size = done = 0
        try:
            for line in lines:
                data = line.encode() + b"\n"
                if piece and (size + len(data) > CHUNK_BYTES
                              or self.size + size + len(data) > self.settings.max_file_bytes):
                    self._append(b"".join(piece), now)
                    done += len(piece)
                    piece, size = [], 0
                piece.append(data)
                size += len(data)
            if piece:
                self._append(b"".join(piece), now)
        except OSError as error:
            raise PartialWrite(done) from error

    def _append(self, data: bytes, now: float) -> None:
        if self._due(now, len(data)):
            self.rotate()
        if self.fd is None:
            self._open(now)
        assert self.fd is not None
        good = self.size
        try:
            view = memoryview(data)
            while view:
                done = os.write(self.fd, view)
                if done <= 0:
                    raise OSError("short write")
                view = view[done:]
        except OSError:
            with contextlib.suppress(OSError):  # leave only whole records behind (a full disk can cut a line)
                os.ftruncate(self.fd, good)
            raise
        self.size += len(data)

    def tick(self, now: float) -> None:
        if self._due(now, 0):
            self.rotate()

    def close(self) -> None:
        self.rotate()


class Capture:
    """Sampled capture: a deque bounded in requests and rows, drained by one writer thread every POLL
    seconds (the request path never wakes it)."""

    def __init__(self, settings: CaptureSettings, manifest: Manifest, count: Counter,
                 write_lines: Callable[[list[str]], None] | None = None, tag: str | None = None) -> None:
        self.settings = settings
        self.count = count
        self.formatter = RecordFormatter(manifest, settings.layout)
        self.pending: deque[tuple[float, str, str, np.ndarray, np.ndarray]] = deque()
        self.limit = settings.queue_size
        self.row_limit = settings.queue_rows
        self.queued_rows = 0
        self.lock = threading.Lock()  # guards queued_rows; held for a few instructions, never while writing
        self.random = random.Random()
        if settings.destination == "stdout":
            if write_lines is None:
                raise ValueError("stdout capture needs the log's write_lines")
            self.sink: StdoutSink | DirectorySink = StdoutSink(write_lines)
        else:
            self.sink = DirectorySink(settings, tag or f"p{os.getpid()}")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kaizen-capture", daemon=True)
        self.thread.start()

    def offer(self, request_id: str, route: str, rows: np.ndarray, predictions: np.ndarray) -> None:
        """The request path: sample, then append references (never blocks, never raises)."""
        try:
            if self.random.random() >= self.settings.rate:
                return
            n = int(rows.shape[0])
            with self.lock:
                full = len(self.pending) >= self.limit or self.queued_rows + n > self.row_limit
                if not full:
                    self.queued_rows += n
                    self.pending.append((time.time(), request_id, route, rows, predictions))
            if full:
                self.count("queue_full", 1)
        except Exception:  # capture must never fail a request
            self.count("error", 1)

    def _run(self) -> None:
        while not self.stopping.wait(POLL):
            self._drain()
        self._drain()
        with contextlib.suppress(OSError):
            self.sink.close()

    def _drain(self) -> None:
        while self.pending:
            items = []
            with self.lock:
                while self.pending and len(items) < BATCH:
                    items.append(self.pending.popleft())
                self.queued_rows -= sum(int(item[3].shape[0]) for item in items)
            self._write(items)
        with contextlib.suppress(OSError):
            self.sink.tick(time.time())

    def _write(self, items: list[tuple[float, str, str, np.ndarray, np.ndarray]]) -> None:
        lines: list[str] = []
        for ts, request_id, route, rows, predictions in items:
            try:
                lines.append(self.formatter.line(ts, request_id, route, rows, predictions))
            except Exception:  # an odd value drops one sample, never the writer
                self.count("error", 1)
        if not lines:
            return
        try:
            self.sink.write(lines, time.time())
        except OSError as error:
            written = error.written if isinstance(error, PartialWrite) else 0
            if written:
                self.count("written", written)
            self.count("write_error", len(lines) - written)
            return
        self.count("written", len(lines))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, finish the current file and stop the writer."""
        self.stopping.set()
        self.thread.join(timeout)
