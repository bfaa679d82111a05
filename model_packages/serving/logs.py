"""Structured JSON log lines, buffered and flushed on a timer to keep the request path cheap."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

PIPE_BUF = 4096  # writes up to this size to a pipe are atomic (POSIX)


class JsonLog:
    """Writes one JSON object per line; `flush()` is called by the server every half second."""

    def __init__(self, stream: IO[str] | None = None, **fields: Any) -> None:
        self.stream = stream or sys.stdout
        self.fields = fields
        self._buffer: list[str] = []
        self._lock = threading.Lock()  # flush (event loop) and capture lines (writer thread) share the stream

    def event(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **self.fields, **fields}
        self._buffer.append(json.dumps(record, separators=(",", ":"), default=str))
        if len(self._buffer) >= 256:
            self.flush()

    def flush(self) -> None:
        """Write whole lines in pieces of at most PIPE_BUF bytes, so workers sharing stdout never tear a line."""
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []  # events may arrive from the inference thread meanwhile
        self.write_lines(lines)

    def write_lines(self, lines: list[str]) -> None:
        """Write whole lines now (also data capture's stdout sink), never interleaved with another writer."""
        with self._lock:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        piece: list[str] = []
        size = 0
        for line in lines:
            if piece and size + len(line) + 1 > PIPE_BUF:
                self.stream.write("\n".join(piece) + "\n")
                self.stream.flush()
                piece, size = [], 0
            piece.append(line)
            size += len(line) + 1
        self.stream.write("\n".join(piece) + "\n")
        self.stream.flush()
