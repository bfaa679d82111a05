"""An append-only JSON-lines audit trail; each record carries the SHA-256 of the one before.

    {"seq": 3, "at": "2026-12-03T06:00:00Z", "event": "deploy", "stack": "prod",
     "image": "...@sha256:...", "actor": "ci", "commit": "...", "prev": "<sha256 of record 2>"}

The file is `$KAIZEN_AUDIT_TRAIL` (default `.kaizen/audit.jsonl` under the working directory).
`verify` checks the chain, so an edited, reordered or deleted record is caught.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_packages.errors import KaizenError

GENESIS = "0" * 64


class AuditError(KaizenError):
    """The audit trail is unreadable or its chain is broken."""


def trail_path(path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("KAIZEN_AUDIT_TRAIL", ".kaizen/audit.jsonl"))


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every record, oldest first; the chain is verified on the way."""
    return list(_verified(trail_path(path)))


def _verified(file: Path) -> Iterator[dict[str, Any]]:
    if not file.exists():
        return
    prev = GENESIS
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                raise AuditError(f"{file}:{number}: not a JSON record") from None
            if not isinstance(record, dict) or record.get("seq") != number:
                raise AuditError(f"{file}:{number}: record out of sequence")
            if record.get("prev") != prev:
                raise AuditError(f"{file}:{number}: the chain is broken (the record before was changed or removed)")
            prev = record_hash(record)
            yield record


def append(event: str, path: str | Path | None = None, **fields: Any) -> dict[str, Any]:
    """Append one record (under an exclusive lock) and return it."""
    file = trail_path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        records = list(_verified(file))
        record = {
            "seq": len(records) + 1,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event": event,
            **fields,
            "prev": record_hash(records[-1]) if records else GENESIS,
        }
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record
