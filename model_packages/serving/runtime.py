"""The model's life in the runtime, apart from the transport: load, drift statistics, warm-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_packages.serving.runner import Runner, load_runner
from model_packages.serving.settings import Settings

if TYPE_CHECKING:
    from model_packages.serving.workers import WorkerContext


def build_runner(settings: Settings, worker: WorkerContext | None = None) -> Runner:
    """Load and verify the package, attach drift statistics (shared across workers), warm the model
    up; every failure is one PackageError (`runner.load_runner`)."""
    return load_runner(
        settings.model_dir, drift=settings.drift, serve_with=settings.serve_with,
        share_dir=worker.drift_dir if worker else None, worker=worker.index if worker else 0,
    )
