"""RSS growth of the runtime's drift hook over a long stream (the issue's target: < 1 MB after
10 million rows x 50 features).

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/drift/memory.py [--rows 10000000]

Rows go through `DriftMonitor.observe` (the hook `Runner.predict_array` calls) in requests of 100
rows (2% of a 5,000-row window, the most one request counts), with the model's predictions; the
timer's `tick` runs every 20 requests on a simulated clock, so windows close by count and by time.
RSS (VmRSS) is read after the first million rows (every cache and table warm) and at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model_packages.baseline import compute_baseline, prediction_baseline
from model_packages.manifest import FeatureSpec, Lineage, Manifest, OutputSpec
from model_packages.serving.drift import DriftConfig, DriftMonitor

FEATURES = 50
REQUEST = 100


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def manifest(rng: np.random.Generator) -> Manifest:
    train = rng.normal(size=(10_000, FEATURES))
    specs = [FeatureSpec(name=f"x{j}") for j in range(FEATURES)]
    baseline = compute_baseline({f"x{j}": train[:, j] for j in range(FEATURES)}, specs)
    baseline = baseline.model_copy(update={"prediction": prediction_baseline(train.sum(axis=1), "regression")})
    return Manifest(name="bench", version="1.0.0", framework="sklearn", format="skops", artifact="model.skops",
                    artifact_sha256="0" * 64, inputs=specs, output=OutputSpec(task="regression"), baseline=baseline,
                    lineage=Lineage(data_sha256="0" * 64, created_at=datetime.now(UTC), kaizen_version="bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clock = [0.0]
    monitor = DriftMonitor(manifest(rng), DriftConfig(window_rows=5000, window_seconds=60, min_rows=100),
                           clock=lambda: clock[0])
    # A pool of distinct requests (generating 10M fresh normals would dominate the run).
    pool = [rng.normal(size=(REQUEST, FEATURES)) for _ in range(64)]
    predictions = [rows.sum(axis=1) for rows in pool]
    started = time.perf_counter()
    warm = None
    requests = args.rows // REQUEST
    for i in range(requests):
        monitor.observe(pool[i % 64], predictions[i % 64])
        if i % 20 == 19:
            clock[0] += 0.5
            monitor.tick()
        if warm is None and (i + 1) * REQUEST >= 1_000_000:
            warm = rss_kb()
    monitor.tick()
    end = rss_kb()
    seconds = time.perf_counter() - started
    result = {"rows": requests * REQUEST, "features": FEATURES, "windows": monitor.windows,
              "rss_after_1M_rows_kb": warm, "rss_end_kb": end, "growth_kb": end - (warm or end),
              "rows_per_second": round(requests * REQUEST / seconds), "seconds": round(seconds, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
