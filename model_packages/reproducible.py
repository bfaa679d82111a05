"""Bit-identical artifacts: what varies between two identical training runs, made fixed.

* skops names its zip entries and `__id__`s after `id(obj)` and stamps each entry with the clock:
  `deterministic_skops` renumbers the ids in traversal order (the same bijection for entry names
  and references, so shared objects stay shared) and rewrites the zip with sorted entries, a fixed
  date and fixed attributes.
* skl2onnx names the graph after a UUID and lists opsets in an order that changes per process:
  `deterministic_onnx` names the graph after its content and sorts (and de-duplicates) opset_import.
* The manifest's creation time is `$SOURCE_DATE_EPOCH` when set (reproducible-builds.org), and the
  code revision `$KAIZEN_CODE_REVISION` when set, else `git rev-parse HEAD`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_packages.errors import KaizenError
from model_packages.shell import run_quiet

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def source_date() -> datetime:
    """`$SOURCE_DATE_EPOCH` as a UTC time, else now (whole seconds)."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return datetime.now(UTC).replace(microsecond=0)
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (ValueError, OverflowError):
        raise KaizenError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970") from None


@contextlib.contextmanager
def pinned_env(**values: str | None) -> Iterator[None]:
    """Set (a value) or leave alone (None) environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def code_revision(where: Path | None = None) -> str | None:
    """`$KAIZEN_CODE_REVISION` (set but empty: none), else the git commit of `where` (default: the
    working directory), else None."""
    if "KAIZEN_CODE_REVISION" in os.environ:
        return os.environ["KAIZEN_CODE_REVISION"] or None
    return run_quiet(["git", "rev-parse", "HEAD"], cwd=where)


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_renumber(item, ids, files) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            out[key] = ids.setdefault(value, len(ids))
        elif key == "file" and isinstance(value, str) and value.endswith(".npy") and node.get("type") == "numpy":
            out[key] = files.setdefault(value, f"{len(files)}.npy")
        else:
            out[key] = _renumber(value, ids, files)
    return out


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    """A stored (uncompressed) zip of `entries`: sorted names, fixed date, mode 0644, Unix origin."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def deterministic_skops(path: Path) -> None:
    """Rewrite the skops file `path` in place so that equal models give equal bytes."""
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    if "schema.json" not in entries:
        raise KaizenError(f"{path} is not a skops file (no schema.json)")
    files: dict[str, str] = {}
    schema = _renumber(json.loads(entries.pop("schema.json")), {}, files)
    unknown = sorted(set(entries) - set(files))
    if unknown:
        raise KaizenError(f"{path}: entry {unknown[0]} is not referenced by schema.json")
    renamed = {files[name]: data for name, data in entries.items()}
    renamed["schema.json"] = json.dumps(schema, indent=2).encode()
    path.write_bytes(deterministic_zip(renamed))


def deterministic_onnx(model: Any) -> Any:
    """`model` (a ModelProto, changed in place and returned) with its opset_import sorted by domain
    (one entry per domain, the highest version) and its graph named after its content."""
    versions: dict[str, int] = {}
    for opset in model.opset_import:
        versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    del model.opset_import[:]
    for domain in sorted(versions):
        entry = model.opset_import.add()
        entry.domain, entry.version = domain, versions[domain]
    model.graph.name = ""
    model.graph.name = "g" + hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()[:32]
    return model


def deterministic_onnx_bytes(data: bytes) -> bytes:
    import onnx

    return deterministic_onnx(onnx.load_from_string(data)).SerializeToString(deterministic=True)


class ReplayError(KaizenError):
    """A recorded run cannot be replayed as recorded, or the replay did not give the same bytes."""


def replay(run_json: Path, out: Path, *, data: Path | None = None, champion: Path | None = None,
           pipeline_file: Path | None = None) -> dict[str, Any]:
    """Replay the run recorded in `run_json` (written by `kaizen retrain` beside a promoted package)
    into `out` with a fresh step cache, and check the package is byte-identical: every file's
    SHA-256 and the package hash. Inputs default to the recorded paths; each must hash as recorded."""
    import shutil
    import tempfile

    from model_packages.retrain.pipeline import load_pipeline, sha256_file
    from model_packages.retrain.run import package_files, package_hash, retrain

    try:
        record = json.loads(run_json.read_text())
        recorded = record["package"]
        params, epoch = record["params"], record["source_date_epoch"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReplayError(f"{run_json} is not a recorded run: {type(err).__name__}: {err}") from None
    pipeline_file = pipeline_file or Path(record.get("pipeline_file") or "")
    data = data or Path(record["data"])
    champion = champion or Path(record["champion"]["path"])
    for what, path, want in (("pipeline file", pipeline_file, record.get("pipeline_file_sha256")),
                             ("data", data, record["data_sha256"]),
                             ("champion", champion / "kaizen.yaml", record["champion"]["manifest_sha256"])):
        if not path.is_file():
            raise ReplayError(f"the {what} {path} does not exist")
        if want and sha256_file(path) != want:
            raise ReplayError(f"the {what} {path} is not the one recorded (sha256 {sha256_file(path)[:12]}, "
                              f"recorded {want[:12]})")
    current, wanted = code_revision(pipeline_file.resolve().parent), record.get("code_revision")
    if wanted and current and current != wanted:
        raise ReplayError(f"the run was recorded at code revision {wanted}; this checkout is {current}")
    pipeline = load_pipeline(pipeline_file)
    if pipeline.version(params) != record["pipeline_version"]:
        raise ReplayError(f"pipeline {pipeline.name} is not the recorded version (step code, parameters, lock "
                          f"files or base image changed): {pipeline.version(params)[:12]} != "
                          f"{record['pipeline_version'][:12]}")
    cache = Path(tempfile.mkdtemp(prefix="kaizen-replay-"))
    try:
        with pinned_env(SOURCE_DATE_EPOCH=str(epoch), KAIZEN_CODE_REVISION=wanted or ""):
            outcome = retrain(pipeline, data, champion, out, cache_dir=cache, params=params,
                              pipeline_file=pipeline_file)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if outcome.package is None:
        raise ReplayError("the replayed candidate was rejected by the gate; the recorded one was promoted")
    files, digest = package_files(outcome.package), package_hash(outcome.package)
    differ = sorted(n for n in set(files) | set(recorded["files"]) if files.get(n) != recorded["files"].get(n))
    if differ or (recorded.get("package_hash") and digest and digest != recorded["package_hash"]):
        raise ReplayError(f"the replay of {recorded['name']} {recorded['version']} is not bit-identical: "
                          + (", ".join(differ) + " differ" if differ else "the package hash differs"))
    return {"identical": True, "package": str(outcome.package), "files": len(files), "package_hash": digest}
