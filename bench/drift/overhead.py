"""Serving overhead of drift: req/s with KAIZEN_DRIFT on and off, in the same run.

    flock -x /tmp/kaizen-bench.lock .venv/bin/python bench/drift/overhead.py [--seconds 5 --repeat 3]
        [--before DIR]

The iris example (compiled ONNX) behind one worker pinned to core 1; wrk (2 threads, 16
connections) pinned to core 0 posts 1-row and 32-row bodies to /invocations. On and off alternate
(on, off, on, off, ...) so drifting machine load hits both; the table gives the median req/s of
each and the relative difference. On a shared machine req/s moves with other processes' load on the
server's core; the server's own CPU time per request (utime + stime of its process tree over the run)
moves much less, so it is reported beside (median of the runs, and median of each rotation's ratio to
its own off run): at saturation on one core, req/s is 1 / (CPU per request).
With drift on, a 5-second window (the e2e setting) keeps the timer closing windows during the run, so
the cost of judging them is included. `--before DIR` adds a third mode, drift on with the runtime of
another checkout (e.g. `git archive` of the commit before a change), in the same rotation: a
before/after under the same machine load.
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
from bench.serving.run import cpu_seconds

ROW = [5.1, 3.5, 1.4, 0.2]


def wrk(port: int, rows: int, seconds: int, work: Path) -> tuple[float, int]:
    """(req/s, requests) of one wrk run."""
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
            return result["requests"] / (result["duration_us"] / 1e6), int(result["requests"])
    raise RuntimeError(f"wrk failed: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="checkout whose runtime is the 'before' (drift on)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kaizen-drift-overhead-"))
    on = {"KAIZEN_DRIFT": "on", "KAIZEN_DRIFT_WINDOW_SECONDS": "5"}
    modes: dict[str, tuple[Path, dict[str, str]]] = {"on": (REPO, on), "off": (REPO, {"KAIZEN_DRIFT": "off"})}
    if args.before is not None:
        modes["before"] = (args.before.resolve(), on)
    results: dict[str, dict[int, list[float]]] = {mode: {1: [], 32: []} for mode in modes}
    cpu: dict[str, dict[int, list[float]]] = {mode: {1: [], 32: []} for mode in modes}  # server CPU us / request
    for _ in range(args.repeat):
        for mode, (source, env) in modes.items():
            server = Server(source, {"KAIZEN_WORKERS": "1", **env}, work / f"{mode}.log")
            try:
                subprocess.run(["taskset", "-a", "-p", "-c", "1", str(server.proc.pid)], capture_output=True,
                               check=True)
                for rows in (1, 32):
                    wrk(server.port, rows, 2, work)  # warm-up
                    started = cpu_seconds(server.proc.pid)
                    rps, requests = wrk(server.port, rows, args.seconds, work)
                    results[mode][rows].append(rps)
                    cpu[mode][rows].append(1e6 * (cpu_seconds(server.proc.pid) - started) / max(1, requests))
            finally:
                server.stop()
    print("| body | mode | req/s (median) | vs off | server CPU us / request (median) | vs off | vs off, paired |")
    print("|---|---|---|---|---|---|---|")
    summary: dict[int, dict[str, Any]] = {}
    for rows in (1, 32):
        summary[rows] = {}
        off_rps, off_cpu = statistics.median(results["off"][rows]), statistics.median(cpu["off"][rows])
        for mode in modes:
            rps, us = statistics.median(results[mode][rows]), statistics.median(cpu[mode][rows])
            rps_change, cpu_change = 100 * (rps - off_rps) / off_rps, 100 * (us - off_cpu) / off_cpu
            # each rotation's own ratio to the off run beside it (slow swings of machine load cancel)
            pairs = zip(cpu[mode][rows], cpu["off"][rows], strict=True)
            paired = statistics.median(100 * (a / b - 1) for a, b in pairs)
            summary[rows][mode] = {"rps": round(rps), "rps_change_percent": round(rps_change, 1),
                                   "cpu_us": round(us, 1), "cpu_change_percent": round(cpu_change, 1),
                                   "cpu_change_percent_paired": round(paired, 1),
                                   "runs_rps": [round(x) for x in results[mode][rows]],
                                   "runs_cpu_us": [round(x, 1) for x in cpu[mode][rows]]}
            print(f"| {rows} row{'s' if rows > 1 else ''} | {mode} | {rps:.0f} | {rps_change:+.1f}% | {us:.1f} "
                  f"| {cpu_change:+.1f}% | {paired:+.1f}% |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
