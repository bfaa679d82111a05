"""The model's life in the runtime, apart from the transport: load, drift statistics, warm-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_packages.loading import load_model
from model_packages.serving.drift import FeatureStats
from model_packages.serving.runner import Runner
from model_packages.serving.settings import Settings

if TYPE_CHECKING:
    from model_packages.serving.workers import WorkerContext


def build_runner(settings: Settings, worker: WorkerContext | None = None) -> Runner:
    """Load and verify the package, attach drift statistics (shared across workers), warm the model up."""
    model = load_model(settings.model_dir)
    stats = FeatureStats(
        model.manifest, settings.drift_window_rows, settings.drift_min_rows,
        share_dir=worker.drift_dir if worker else None, worker=worker.index if worker else 0,
    )
    runner = Runner(model, stats)
    runner.warm_up()
    return runner
