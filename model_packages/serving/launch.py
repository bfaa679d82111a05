"""`python -m model_packages.serving [serve | batch ...]`: one process, a supervisor of workers, or a batch job.

Kept light on purpose: the supervisor imports neither numpy nor the app, so workers start sooner.
"""

from __future__ import annotations

import sys

from model_packages.serving.settings import Settings, SettingsError


def start(settings: Settings) -> int:
    """Serve in this process, or supervise `settings.workers` worker processes; returns the exit code."""
    from model_packages.serving import workers

    context = workers.WorkerContext.from_env()
    if context is not None or settings.workers <= 1:
        from model_packages.serving.server import run

        return run(settings, context)
    return workers.supervise(settings)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "batch":  # the same image as a batch job (model_packages/batch/entry.py)
        from model_packages.batch.entry import main as batch_main

        return batch_main(args[1:])
    if args and args[0] == "batch-blob":  # the same, on Blob Storage (model_packages/batch/blob_entry.py)
        from model_packages.batch.blob_entry import main as blob_main

        return blob_main(args[1:])
    if args and args[0] == "serve":  # SageMaker starts containers as `docker run IMAGE serve`
        args = args[1:]
    if args:
        print("usage: python -m model_packages.serving [serve | batch INPUT... --out DIR | batch-blob NAME...]  "
              f"(unexpected arguments: {args})", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"kaizen: {error}", file=sys.stderr)
        return 2
    return start(settings)
