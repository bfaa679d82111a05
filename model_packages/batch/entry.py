"""`python -m model_packages.serving batch INPUT... --out DIR`: the image's job entry point.

stdlib + numpy only (what every image has); one JSON log line per chunk and one summary line.
Exit codes: 0 done (rejects are listed in the output, not an error), 1 the model failed to load,
2 bad arguments or inputs, 3 `--resume-from` could not read S3.

`--resume-from s3://bucket/prefix/{execution}/` (a SageMaker Processing job, infra/aws/batch.py):
the chunks an earlier run of the execution uploaded there are skipped (model_packages/batch/resume.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from model_packages.batch.job import ChunkResult, open_job
from model_packages.batch.readers import BatchError
from model_packages.errors import PackageError
from model_packages.loading import SERVE_WITH
from model_packages.serving.settings import SettingsError, read_serve_with


def _log(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def execution_id() -> str:
    """The scheduler's name for this run, so `--out /data/out/{execution}` gives each run its own
    directory and a retried task of the same run resumes it: KAIZEN_BATCH_RUN, else Cloud Run's
    CLOUD_RUN_EXECUTION, else the Container Apps replica's CONTAINER_APP_JOB_EXECUTION_NAME, else "run"."""
    for name in ("KAIZEN_BATCH_RUN", "CLOUD_RUN_EXECUTION", "CONTAINER_APP_JOB_EXECUTION_NAME"):
        value = os.environ.get(name, "")
        if value and "/" not in value and value not in (".", ".."):
            return value
    return "run"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_packages.serving batch",
                                     description="Score CSV / JSON Lines / Parquet files with the packaged model.")
    parser.add_argument("inputs", nargs="+", type=Path, help="input files (.csv, .jsonl, .parquet)")
    parser.add_argument("--out", required=True, type=Path, help="output directory (resumable)")
    parser.add_argument("--chunk-rows", type=int, default=int(os.environ.get("KAIZEN_BATCH_CHUNK_ROWS", "10000")))
    parser.add_argument("--probabilities", action="store_true", help="add one p_<label> column per label")
    parser.add_argument("--resume-from", help="s3://bucket/prefix/ where an earlier run of this job uploaded --out")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("KAIZEN_MODEL_DIR", "/opt/kaizen/model")))
    parser.add_argument("--serve-with", choices=SERVE_WITH, default=None,
                        help="the compiled serving artifact (default) or the source one; default $KAIZEN_SERVE_WITH")
    args = parser.parse_args(argv)
    args.out = Path(str(args.out).replace("{execution}", execution_id()))
    hashes: list[str] | None = None
    if args.resume_from:
        from model_packages.batch.resume import input_hashes, seed_from_s3
        from model_packages.batch.s3 import S3Client, S3Error

        uri = args.resume_from.replace("{execution}", execution_id())
        try:
            hashes = input_hashes(args.inputs)
            chunks = seed_from_s3(uri, args.out, args.inputs, hashes, S3Client.from_env(os.environ))
        except S3Error as error:
            _log(event="batch_failed", error=str(error))
            return 3
        except BatchError as error:
            _log(event="batch_failed", error=str(error))
            return 2
        _log(event="batch_resume", prefix=uri, chunks_done=chunks)
    try:
        serve_with = args.serve_with or read_serve_with(os.environ)
    except SettingsError as error:
        _log(event="batch_failed", error=str(error))
        return 2
    try:
        job = open_job(args.model_dir, args.inputs, args.out, chunk_rows=args.chunk_rows,
                       probabilities=args.probabilities, serve_with=serve_with)
    except PackageError as error:
        _log(event="model_load_failed", error=str(error))
        return 1
    except BatchError as error:
        _log(event="batch_failed", error=str(error))
        return 2
    if hashes is not None:  # what the next run of this execution checks its inputs against
        job.manifest["inputs_sha256"] = hashes

    def on_chunk(result: ChunkResult) -> None:
        _log(event="batch_chunk", input=str(args.inputs[result.input_index]), chunk=result.chunk,
             rows=result.rows, rejects=result.rejects, skipped=result.skipped)

    try:
        summary = job.run(on_chunk)
    except BatchError as error:
        _log(event="batch_failed", error=str(error))
        return 2
    _log(event="batch_done", model=job.runner.manifest.name, version=job.runner.manifest.version,
         rows=summary.rows, rejects=summary.rejects, chunks_scored=summary.chunks_scored,
         chunks_skipped=summary.chunks_skipped, seconds=round(summary.seconds, 3),
         rows_per_second=round(summary.rows_per_second, 1), out=str(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
