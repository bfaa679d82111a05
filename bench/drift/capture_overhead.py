"""Data capture's cost on the serving path: req/s with capture off and at rate 1, same run, alternated.

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/drift/capture_overhead.py [--seconds 10] [--rounds 2]

One runtime (KAIZEN_WORKERS=1) serving examples/iris-classifier on 127.0.0.1, wrk -t1 -c16 sending 1-row
/invocations; each round runs capture off, then KAIZEN_CAPTURE_RATE=1 into a temporary directory.
Prints one JSON line per run and the median overhead; writes bench/results/capture-overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances":[[5.1,3.5,1.4,0.2]]}'
"""


def run_once(capture: bool, seconds: int, work: Path) -> dict[str, object]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "AIP_")) and k != "PORT"}
    env.update(KAIZEN_MODEL_DIR=str(ROOT / "examples" / "iris-classifier"), KAIZEN_HOST="127.0.0.1",
               KAIZEN_PORT=str(port), KAIZEN_WORKERS="1", KAIZEN_LOG_REQUESTS="false", PYTHONPATH=str(ROOT))
    target = work / f"capture-{port}"
    if capture:
        env.update(KAIZEN_CAPTURE_RATE="1", KAIZEN_CAPTURE_DIR=str(target))
    server = subprocess.Popen([sys.executable, "-m", "model_packages.serving"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if requests.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        script = work / "post.lua"
        script.write_text(LUA)
        done = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), url + "/invocations"],
                              capture_output=True, text=True, check=True)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
        metrics = requests.get(url + "/metrics", timeout=5).text
        lines = metrics.splitlines()
        written = sum(float(x.split()[-1]) for x in lines if x.startswith("kaizen_capture_written_total"))
        dropped = sum(float(x.split()[-1]) for x in lines if x.startswith("kaizen_capture_dropped_total"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"capture": capture, "req_per_s": rate, "written": written, "dropped": dropped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for capture in (False, True):
                result = run_once(capture, args.seconds, Path(tmp))
                print(json.dumps(result))
                results.append(result)
    off = statistics.median(r["req_per_s"] for r in results if not r["capture"])  # type: ignore[misc]
    on = statistics.median(r["req_per_s"] for r in results if r["capture"])  # type: ignore[misc]
    summary = {"off_req_per_s": off, "on_req_per_s": on, "overhead_percent": round(100 * (off - on) / off, 1)}
    print(json.dumps(summary))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "capture-overhead.json").write_text(json.dumps({"runs": results, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
