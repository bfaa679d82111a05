"""Time `kaizen drift report` on 1 million rows x 50 features (the issue's goal: <= 10 s on 2 cores).

    flock -x /tmp/kaizen-bench.lock .venv/bin/python bench/drift/report.py [--rows 1000000] [--features 50]
        [--categorical 5] [--formats parquet,csv] [--work DIR] [--source DIR]

It writes a synthetic package (only kaizen.yaml: the report reads nothing else) whose baseline is
computed from 20,000 training rows, then the captured rows (every numeric feature shifted a little,
`--categorical` string features among them, predictions included) as Parquet and CSV, and times the
whole command (`kaizen drift report` in a fresh process: import, read, count, score, render, write)
for each format: wall-clock and CPU (user + system) seconds. On a shared machine the wall time grows
with other processes' load (the load average is printed too), the CPU time much less. `--source`
times another checkout's command on the same files (a before/after). Prints one JSON line per
format and writes bench/results/drift-report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model_packages.baseline import compute_baseline, prediction_baseline  # noqa: E402
from model_packages.manifest import FeatureSpec, Lineage, Manifest, OutputSpec, write_manifest  # noqa: E402

CATEGORIES: list[str | int | float] = ["a", "b", "c", "d", "e"]


def make_package(where: Path, features: int, categorical: int, rng: np.random.Generator) -> list[FeatureSpec]:
    specs = [FeatureSpec(name=f"x{i:02d}") for i in range(features - categorical)]
    specs += [FeatureSpec(name=f"c{i:02d}", dtype="categorical", categories=list(CATEGORIES))
              for i in range(categorical)]
    train = 20_000
    columns: dict[str, object] = {}
    for spec in specs:
        columns[spec.name] = (rng.choice(CATEGORIES, train).astype(object) if spec.dtype == "categorical"
                              else rng.normal(0.0, 1.0, train))
    baseline = compute_baseline(columns, specs)  # type: ignore[arg-type]
    labels: list[str | int | float] = ["no", "yes"]
    prediction = prediction_baseline(rng.choice(labels, train).astype(object), "classification")
    manifest = Manifest(
        name="bench-drift", version="1.0.0", framework="onnx", format="onnx", artifact="model.onnx",
        artifact_sha256="0" * 64, inputs=specs, output=OutputSpec(task="classification", labels=labels),
        baseline=baseline.model_copy(update={"prediction": prediction}),
        lineage=Lineage(data_sha256="0" * 64, created_at="2026-01-01T00:00:00Z", kaizen_version="bench"),  # type: ignore[arg-type]
    )
    where.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, where)
    return specs


def make_rows(path: Path, specs: list[FeatureSpec], rows: int, rng: np.random.Generator) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    arrays = {}
    for k, spec in enumerate(specs):
        if spec.dtype == "categorical":
            arrays[spec.name] = pa.array(rng.choice(CATEGORIES, rows, p=[0.3, 0.2, 0.2, 0.2, 0.1]))
        else:
            arrays[spec.name] = pa.array(rng.normal(0.05 * (k % 5), 1.0, rows))
    arrays["prediction"] = pa.array(rng.choice(["no", "yes"], rows))
    table = pa.table(arrays)
    pq.write_table(table, path.with_suffix(".parquet"))
    pcsv.write_csv(table, path.with_suffix(".csv"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--categorical", type=int, default=5)
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "drift-work")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose `kaizen drift report` to time")
    args = parser.parse_args()
    args.work = args.work.resolve()
    rng = np.random.default_rng(7)
    package = args.work / "package"
    specs = make_package(package, args.features, args.categorical, rng)
    data = args.work / f"rows-{args.rows}x{args.features}"
    if not data.with_suffix(".parquet").exists() or not data.with_suffix(".csv").exists():
        make_rows(data, specs, args.rows, rng)
    results = []
    env = dict(os.environ, PYTHONPATH=str(args.source.resolve()))
    for fmt in args.formats.split(","):
        source = data.with_suffix("." + fmt)
        out = args.work / f"report-{fmt}.html"
        started, cpu = time.perf_counter(), _children_cpu()
        command = [sys.executable, "-c", "from model_packages.cli import main; main()", "drift", "report",
                   str(package), str(source), "--out", str(out)]
        # in the source's directory: `-c` puts the working directory before PYTHONPATH on sys.path
        done = subprocess.run(command, env=env, cwd=args.source.resolve(), capture_output=True, text=True,
                              check=False)
        seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            return 1
        report = json.loads(out.with_suffix(".json").read_text())
        result = {"format": fmt, "rows": report["rows"], "features": args.features, "seconds": round(seconds, 2),
                  "cpu_seconds": round(cpu, 2), "load_average": round(os.getloadavg()[0], 2),
                  "input_bytes": source.stat().st_size, "html_bytes": out.stat().st_size,
                  "calibrated": report["calibrated"], "alarm": report["verdict"]["alarm"]}
        print(json.dumps(result))
        results.append(result)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "drift-report.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
