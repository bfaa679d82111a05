"""`kaizen retrain-blob`: the trainer's entry point as an Azure Container Apps job
(infra/azure/retraining.py). Container Apps mounts no Blob Storage, so this stages the data blob
and the champion package from Blob Storage with the job's managed identity
(model_packages/azure_blob.py), runs `kaizen retrain`, and uploads what it wrote (the candidate
package if the gate passed, the gate report, run.json) under the candidates prefix.

The run's audit trail leaves the replica too (its disk is gone when the execution ends): whether
the run passed, was rejected by the gate or failed, the trail it wrote is checked (chain and
signatures) and uploaded as
<KAIZEN_AUDIT_CONTAINER>/<KAIZEN_AUDIT_PREFIX><execution>/{audit.jsonl, audit-key.pub, anchor.json}
(default: the package container, `audit/` beside `candidates/`; execution: the Container Apps job
execution's name), so `kaizen audit verify --trail audit.jsonl` with KAIZEN_AUDIT_PUBKEYS set to
that key (and the anchor) checks it anywhere. Each execution writes its own names: nothing
uploaded earlier is overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from model_packages.azure_blob import BlobClient, BlobError, check_account_url, identity_token, relative_name

ENV_KEYS = ("KAIZEN_BLOB_ACCOUNT_URL", "KAIZEN_DATA_CONTAINER", "KAIZEN_DATA_BLOB", "KAIZEN_PACKAGES_CONTAINER",
            "KAIZEN_CHAMPION_PREFIX", "KAIZEN_CANDIDATES_PREFIX", "KAIZEN_PIPELINE")


def stage_and_run(env: Mapping[str, str], work: Path, run: Callable[[Path, Path, Path, Path], None],
                  client: BlobClient | None = None) -> list[str]:
    """Download data and champion under `work`, call run(pipeline, data, champion, out), upload
    `out` under the candidates prefix. Returns the uploaded blob names. Nothing is uploaded when
    `run` raises."""
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if missing:
        raise BlobError(f"missing settings {missing} (set by infra/azure/retraining.py)")
    data_blob, champion_prefix = env["KAIZEN_DATA_BLOB"], env["KAIZEN_CHAMPION_PREFIX"]
    candidates, packages = env["KAIZEN_CANDIDATES_PREFIX"], env["KAIZEN_PACKAGES_CONTAINER"]
    if not champion_prefix.endswith("/") or not candidates.endswith("/"):
        raise BlobError("KAIZEN_CHAMPION_PREFIX and KAIZEN_CANDIDATES_PREFIX must end with '/'")
    client = client or BlobClient(check_account_url(env["KAIZEN_BLOB_ACCOUNT_URL"]), identity_token(env))
    data = work / "data" / PurePosixPath(data_blob).name
    client.download(env["KAIZEN_DATA_CONTAINER"], data_blob, data)
    champion = work / "champion"
    names = list(client.list(packages, champion_prefix))
    if not names:
        raise BlobError(f"the champion {packages}/{champion_prefix} is empty: the deployed version is not in the "
                        "package store")
    for name in names:
        client.download(packages, name, champion / relative_name(name, champion_prefix))
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    try:
        run(Path(env["KAIZEN_PIPELINE"]), data, champion, out)
    except BaseException:
        with contextlib.suppress(BlobError):  # a failed run's records matter most; its own error is reported
            ship_audit(client, env, work / "audit")
        raise
    uploaded = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = candidates + path.relative_to(out).as_posix()
        client.upload(packages, name, path)
        uploaded.append(name)
    return uploaded + ship_audit(client, env, work / "audit")


def audit_location(env: Mapping[str, str]) -> tuple[str, str]:
    """(container, prefix/<execution>/) where this execution's audit trail goes."""
    container = env.get("KAIZEN_AUDIT_CONTAINER") or env["KAIZEN_PACKAGES_CONTAINER"]
    prefix = env.get("KAIZEN_AUDIT_PREFIX") or env["KAIZEN_CANDIDATES_PREFIX"].removesuffix("candidates/") + "audit/"
    if not prefix.endswith("/"):
        raise BlobError("KAIZEN_AUDIT_PREFIX must end with '/'")
    execution = env.get("CONTAINER_APP_JOB_EXECUTION_NAME", "")
    if not execution or "/" in execution or execution in (".", ".."):
        execution = datetime.now(UTC).strftime("run-%Y%m%dT%H%M%S%fZ")
    return container, f"{prefix}{execution}/"


def ship_audit(client: BlobClient, env: Mapping[str, str], staging: Path) -> list[str]:
    """Upload the audit trail this process wrote (checked first), its verification key and its
    anchor; returns the blob names (none when the run recorded nothing)."""
    from model_packages.audit import trail

    source = trail.trail_path()
    if not source.is_file() or source.stat().st_size == 0:
        return []
    try:
        anchor = trail.anchor(source)
    except trail.AuditError as error:
        raise BlobError(f"the run's audit trail does not verify, not uploaded: {error}") from None
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "audit-key.pub").write_bytes(trail.public_key_pem())
    (staging / "anchor.json").write_text(json.dumps(anchor, sort_keys=True) + "\n")
    files = {"audit.jsonl": source, "audit-key.pub": staging / "audit-key.pub", "anchor.json": staging / "anchor.json"}
    container, prefix = audit_location(env)
    for name, path in files.items():
        client.upload(container, prefix + name, path)
    return [prefix + name for name in files]


def retrain_blob_command() -> None:
    """Stage data and the champion from Blob Storage with the job's managed identity, retrain, upload
    the result under the candidates prefix (the Azure retraining job's entry point)."""
    import tempfile

    import typer
    from rich.console import Console

    from model_packages.retrain.commands import retrain_command

    def run(pipeline: Path, data: Path, champion: Path, out: Path) -> None:
        retrain_command(pipeline_file=pipeline, data=data, out=out, champion=champion, stack=None,
                        project_dir=Path("."), cache=out.parent / "cache", param=None, reject_ok=True, replay=None)

    work = Path(tempfile.mkdtemp(prefix="kaizen-blob-"))
    own_trail = "KAIZEN_AUDIT_TRAIL" not in os.environ
    if own_trail:  # this execution's records only, in a trail of their own
        os.environ["KAIZEN_AUDIT_TRAIL"] = str(work / "audit.jsonl")
    try:
        for name in stage_and_run(os.environ, work, run):
            typer.echo(name)
    except BlobError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}")
        raise typer.Exit(code=1) from None
    finally:
        if own_trail:
            os.environ.pop("KAIZEN_AUDIT_TRAIL", None)
        shutil.rmtree(work, ignore_errors=True)
