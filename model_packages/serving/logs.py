"""Structured JSON log lines, buffered and flushed on a timer to keep the request path cheap."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


class JsonLog:
    """Writes one JSON object per line; `flush()` is called by the server every half second."""

    def __init__(self, stream: IO[str] | None = None, **fields: Any) -> None:
        self.stream = stream or sys.stdout
        self.fields = fields
        self._buffer: list[str] = []

    def event(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **self.fields, **fields}
        self._buffer.append(json.dumps(record, separators=(",", ":"), default=str))
        if len(self._buffer) >= 256:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.stream.write("\n".join(self._buffer) + "\n")
            self._buffer.clear()
            self.stream.flush()
