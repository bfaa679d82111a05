"""Serving overhead of drift: req/s with KAIZEN_DRIFT on and off, in the same run.

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/drift/overhead.py [--seconds 5 --repeat 3]

The iris example (compiled ONNX) behind one worker pinned to core 1; wrk (2 threads, 16
connections) pinned to core 0 posts 1-row and 32-row bodies to /invocations. On and off alternate
(on, off, on, off, ...) so drifting machine load hits both; the table gives the median req/s of
each and the relative difference. With drift on, a 5-second window (the e2e setting) keeps the
timer closing windows during the run, so the cost of judging them is included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.serving.hostile import LUA, REPO, Server

ROW = [5.1, 3.5, 1.4, 0.2]


def wrk(port: int, rows: int, seconds: int, work: Path) -> float:
    body = json.dumps({"instances": [ROW] * rows}, separators=(",", ":"))
    lua = work / f"predict-{rows}.lua"
    lua.write_text(LUA.replace("""'{"instances":[[5.1,3.5,1.4,0.2]]}'""", "'" + body + "'"))
    argv = ["taskset", "-c", "0", "wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "--timeout", "5s",
            "-s", str(lua), f"http://127.0.0.1:{port}/invocations"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    for line in out.splitlines():
        if line.startswith("KAIZEN_BENCH "):
            result: dict[str, Any] = json.loads(line.removeprefix("KAIZEN_BENCH "))
            if result["errors"] or result["status"]:
                raise RuntimeError(f"wrk saw errors: {result}")
            return result["requests"] / (result["duration_us"] / 1e6)
    raise RuntimeError(f"wrk failed: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kaizen-drift-overhead-"))
    results: dict[str, dict[int, list[float]]] = {"on": {1: [], 32: []}, "off": {1: [], 32: []}}
    env = {"on": {"KAIZEN_DRIFT": "on", "KAIZEN_DRIFT_WINDOW_SECONDS": "5"}, "off": {"KAIZEN_DRIFT": "off"}}
    for _ in range(args.repeat):
        for mode in ("on", "off"):
            server = Server(REPO, {"KAIZEN_WORKERS": "1", **env[mode]}, work / f"{mode}.log")
            try:
                subprocess.run(["taskset", "-a", "-p", "-c", "1", str(server.proc.pid)], capture_output=True,
                               check=True)
                for rows in (1, 32):
                    wrk(server.port, rows, 2, work)  # warm-up
                    results[mode][rows].append(wrk(server.port, rows, args.seconds, work))
            finally:
                server.stop()
    print("| body | drift on req/s | drift off req/s | on vs off |")
    print("|---|---|---|---|")
    summary = {}
    for rows in (1, 32):
        on, off = statistics.median(results["on"][rows]), statistics.median(results["off"][rows])
        summary[rows] = {"on": round(on), "off": round(off), "change_percent": round(100 * (on - off) / off, 1),
                         "runs_on": [round(x) for x in results["on"][rows]],
                         "runs_off": [round(x) for x in results["off"][rows]]}
        print(f"| {rows} row{'s' if rows > 1 else ''} | {on:.0f} | {off:.0f} | {100 * (on - off) / off:+.1f}% |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
