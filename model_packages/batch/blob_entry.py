"""`python -m model_packages.serving batch-blob NAME... [--chunk-rows N] [--probabilities]`: the
image's batch entry point on Blob Storage, for an Azure Container Apps job (infra/azure/batch.py),
which mounts no Blob Storage.

With the job's managed identity (model_packages/azure_blob.py): download each input
<KAIZEN_INPUT_CONTAINER>/<KAIZEN_INPUT_PREFIX><NAME> to the replica's ephemeral disk, run the same
`batch` scoring into a local directory, upload it to
<KAIZEN_OUTPUT_CONTAINER>/<KAIZEN_OUTPUT_PREFIX><execution>/ (execution: the Container Apps job
execution's name). Inputs and outputs must fit the replica's ephemeral storage. Nothing is uploaded
when scoring fails (exit codes as `batch`: 1 model, 2 inputs); 3 is a Blob Storage error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath

from model_packages.azure_blob import BlobClient, BlobError, check_account_url, identity_token

ENV_KEYS = ("KAIZEN_BLOB_ACCOUNT_URL", "KAIZEN_INPUT_CONTAINER", "KAIZEN_OUTPUT_CONTAINER")


def run_on_blobs(argv: list[str], env: Mapping[str, str], work: Path, score: Callable[[list[str]], int],
                 client: BlobClient | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_packages.serving batch-blob")
    parser.add_argument("names", nargs="+", help="input blob names under KAIZEN_INPUT_PREFIX")
    parser.add_argument("--chunk-rows", type=int)
    parser.add_argument("--probabilities", action="store_true")
    args = parser.parse_args(argv)
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if missing:
        raise BlobError(f"missing settings {missing} (set by infra/azure/batch.py)")
    for name in args.names:
        if PurePosixPath(name).name != name or name in (".", ".."):
            raise BlobError(f"input {name!r} is not a plain file name")
    from model_packages.batch.entry import execution_id

    client = client or BlobClient(check_account_url(env["KAIZEN_BLOB_ACCOUNT_URL"]), identity_token(env))
    in_prefix, out_prefix = env.get("KAIZEN_INPUT_PREFIX", ""), env.get("KAIZEN_OUTPUT_PREFIX", "")
    inputs = []
    for name in args.names:
        local = work / "in" / name
        client.download(env["KAIZEN_INPUT_CONTAINER"], in_prefix + name, local)
        inputs.append(str(local))
    out = work / "out"
    code = score([*inputs, "--out", str(out),
                  *(["--chunk-rows", str(args.chunk_rows)] if args.chunk_rows else []),
                  *(["--probabilities"] if args.probabilities else [])])
    if code != 0:
        return code
    target = f"{out_prefix}{execution_id()}/"
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        client.upload(env["KAIZEN_OUTPUT_CONTAINER"], target + path.relative_to(out).as_posix(), path)
    print(json.dumps({"event": "batch_uploaded", "container": env["KAIZEN_OUTPUT_CONTAINER"], "prefix": target}),
          flush=True)
    return 0


def main(argv: list[str]) -> int:
    from model_packages.batch.entry import main as score

    work = Path(tempfile.mkdtemp(prefix="kaizen-batch-"))
    try:
        return run_on_blobs(argv, os.environ, work, score)
    except BlobError as error:
        print(json.dumps({"event": "batch_failed", "error": str(error)}), flush=True)
        return 3
    finally:
        shutil.rmtree(work, ignore_errors=True)
