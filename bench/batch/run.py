"""Batch scoring throughput on 1 million rows (iris example), compiled and not, against the model's
own predict in-process on the same rows; and a 1-million-row job of the image on the local target.

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/batch/run.py [--rows 1000000] [--no-image]

Writes bench/results/batch.json. Each `kaizen batch` run is a separate process; its peak RSS is the
VmHWM of its own address space, polled from /proc (not ru_maxrss, which also counts the forked copy
of this benchmark's memory before exec): compare --rows 100000 with 1000000 for constant memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support, and the local target's provider as the stack program imports it

from tests.support import peak_rss_kb  # noqa: E402

IRIS = ROOT / "examples" / "iris-classifier"
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def write_input(path: Path, rows: int) -> np.ndarray:
    data = np.round(np.random.default_rng(0).uniform(0.5, 7.0, (rows, 4)), 2)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NAMES)
        writer.writerows(data.tolist())
    return data


def in_process(data: np.ndarray, serve_with: str | None, chunk: int) -> float:
    """The framework's own predict, in-process, on the same rows in the same chunks (no I/O)."""
    from model_packages.serving.runner import load_runner

    model = load_runner(IRIS, serve_with=serve_with).model
    start = time.perf_counter()
    for i in range(0, len(data), chunk):
        model.predict(data[i:i + chunk])
    return len(data) / (time.perf_counter() - start)


def batch_process(source: Path, out: Path, serve_with: str | None, chunk: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if serve_with:
        env["KAIZEN_SERVE_WITH"] = serve_with
    cmd = [sys.executable, "-m", "model_packages.serving", "batch", str(source), "--out", str(out),
           "--chunk-rows", str(chunk), "--model-dir", str(IRIS)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    with ThreadPoolExecutor(1) as pool:  # the job's own VmHWM, polled while its output is read
        peak = pool.submit(peak_rss_kb, proc)
        text = proc.stdout.read()
        proc.wait()
        peak_kb = peak.result()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"batch run failed ({proc.returncode}): {text[-2000:]}")
    done = json.loads(text.splitlines()[-1])
    return {"rows": done["rows"], "rows_per_second": done["rows_per_second"],
            "wall_rows_per_second": round(done["rows"] / wall, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def image_job(source: Path, out: Path, chunk: int) -> dict[str, float]:
    """Build the iris image (tag kaizen-bench/issue15a) and run it as the local target's job."""
    from infra.local.batch import BatchRunProvider, fingerprint
    from model_packages.image.build import build_package
    from model_packages.image.context import Bases

    os.environ.setdefault("KAIZEN_AUDIT", "0")
    tag = "kaizen-bench/iris-batch-issue15a:latest"
    build_package(IRIS, bases=Bases.local(), tag=tag)
    props = {"scope": "kaizen-bench-issue15a", "image": tag, "input_dir": str(source.parent),
             "output_dir": str(out), "inputs": [source.name], "fingerprint": fingerprint(str(source.parent),
                                                                                          [source.name]),
             "chunk_rows": chunk, "probabilities": False, "timeout_minutes": 30}
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    outs = BatchRunProvider().create(props).outs or {}
    wall = time.perf_counter() - start
    return {"rows": outs["rows"], "rows_per_second": outs["rows_per_second"],
            "wall_rows_per_second_incl_container_start": round(outs["rows"] / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--no-image", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {"rows": args.rows, "chunk_rows": args.chunk_rows, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-batch-") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        source = work / "in" / "rows.csv"
        data = write_input(source, args.rows)
        results["input_mb"] = round(source.stat().st_size / 1e6, 1)
        for label, serve_with in (("compiled", None), ("source", "source")):
            results[f"predict_in_process_{label}"] = round(in_process(data, serve_with, args.chunk_rows), 1)
            results[f"batch_{label}"] = batch_process(source, work / f"out-{label}", serve_with, args.chunk_rows)
            print(label, results[f"predict_in_process_{label}"], results[f"batch_{label}"], flush=True)
        if not args.no_image:
            (work / "out-image").mkdir()
            results["local_job_image_compiled"] = image_job(source, work / "out-image", args.chunk_rows)
            print("image", results["local_job_image_compiled"], flush=True)
    out = ROOT / "bench" / "results" / "batch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
