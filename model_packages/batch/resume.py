"""Resume a batch run from the chunks an earlier, killed run uploaded (SageMaker Processing).

A Processing job starts on an empty disk, so the local manifest of a killed job is gone; its
output was uploaded to the execution's S3 prefix as it was written (S3UploadMode Continuous), and
a re-run of the execution (a Step Functions retry or redrive keeps the execution name, so the
prefix) lists that prefix first. A chunk counts as done when the uploaded manifest.json records
it *and* its predictions file (and its rejects file, if it had rejects) is in the prefix: uploads
may land in any order, and a chunk with a missing file is simply scored again (same answers, same
key). The local manifest is then seeded with those chunks and the job skips them.

The inputs must be the same bytes as the killed run's (their SHA-256, kept in the manifest as
`inputs_sha256`): SageMaker downloads them afresh, so size and mtime say nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from model_packages.batch.job import MANIFEST, chunk_dir, input_record
from model_packages.batch.readers import BatchError
from model_packages.batch.s3 import S3Client, split_uri


def input_hashes(inputs: list[Path]) -> list[str]:
    hashes = []
    for path in inputs:
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        except OSError as error:
            raise BatchError(f"{path}: {error.strerror}") from None
        hashes.append(digest.hexdigest())
    return hashes


def seed_from_s3(uri: str, out: Path, inputs: list[Path], hashes: list[str], client: S3Client) -> int:
    """Write `out`/manifest.json from the run uploaded under `uri`; returns the chunks it records
    as done (0 when there is nothing to resume, or `out` already holds a run: local state wins)."""
    if out.exists() and any(out.iterdir()):
        return 0
    bucket, prefix = split_uri(uri)
    keys = set(client.list(bucket, prefix))
    if prefix + MANIFEST not in keys:
        return 0
    try:
        previous: dict[str, Any] = json.loads(client.get(bucket, prefix + MANIFEST))
        recorded = previous["done"]
    except (ValueError, KeyError, TypeError):
        raise BatchError(f"{uri}{MANIFEST} is not a batch manifest; use a new output prefix") from None
    if previous.get("inputs_sha256") != hashes:
        raise BatchError(f"the inputs are not the bytes the run under {uri} scored (their SHA-256 differs); "
                         "score them under a new output prefix")
    old_paths = [item.get("path") for item in previous.get("inputs", [])]
    if old_paths != [str(p) for p in inputs]:
        raise BatchError(f"the run under {uri} scored inputs {old_paths}, not {[str(p) for p in inputs]}")
    done: dict[str, dict[str, Any]] = {}
    for k, path in enumerate(inputs):
        kept = {}
        for i, counts in dict(recorded.get(str(k), {})).items():
            stem = f"{prefix}{{}}/{int(i):06d}"
            predictions = stem.format(chunk_dir("predictions", k, path)) + ".csv"
            rejects = stem.format(chunk_dir("rejects", k, path)) + ".jsonl"
            if predictions in keys and (not counts.get("rejects") or rejects in keys):
                kept[i] = counts
        done[str(k)] = kept
    seeded = {**previous, "inputs": [input_record(p) for p in inputs], "done": done, "complete": False}
    seeded.pop("totals", None)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(seeded, indent=1, sort_keys=True))
    return sum(len(c) for c in done.values())
