"""Soak with drift on: constant load for --seconds, the max latency of every second and RSS over time.

    flock -x /tmp/kaizen-bench.lock .venv/bin/python bench/drift/soak.py [--seconds 600] [--window-seconds 5]

`python -m model_packages.serving` on examples/iris-classifier (KAIZEN_DRIFT=on, windows of
--window-seconds, the default worker count unless --workers) on 127.0.0.1. wrk (2 threads, 16
connections, pinned to core 0) posts 32-row bodies to /invocations for the whole run (its own max
latency is reported too), and a probe posts one 32-row body every 20 ms on its own keep-alive
connection, recording each latency by the second it finished in (a stall shows as a second with a
large max, or as seconds with no answer at all). RSS of the server's process tree is sampled every
second. Prints JSON (max latency per second summarised, the slowest seconds with their offsets,
RSS at start/end/max, drift windows closed and drift errors from the server log) and writes it to
bench/results/drift-soak.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.serving.hostile import LUA, REPO, Server
from bench.serving.run import memory_mb

ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps({"instances": [ROW] * 32}, separators=(",", ":")).encode()


class Probe(threading.Thread):
    """POST /invocations every `every` seconds on one keep-alive connection; latency per second."""

    def __init__(self, port: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.start_time = time.monotonic()
        self.per_second: dict[int, float] = {}  # second since start -> max latency (s) of answers in it
        self.answers = 0
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BODY))
        sock = None
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                sock.sendall(head + BODY)
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith((b"}", b"]")):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError
                    reply += chunk
                if not reply.startswith(b"HTTP/1.1 200"):
                    self.failures += 1
                done = time.monotonic()
                second = int(done - self.start_time)
                self.per_second[second] = max(self.per_second.get(second, 0.0), done - started)
                self.answers += 1
            except OSError:
                self.failures += 1
                if sock is not None:
                    sock.close()
                sock = None
            time.sleep(max(0.0, self.every - (time.monotonic() - started)))


class Rss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.samples.append(memory_mb(self.pid)[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--window-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=None, help="KAIZEN_WORKERS (default: the runtime's)")
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose runtime to run")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "drift-soak-work")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "drift-soak.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    env = {"KAIZEN_DRIFT": "on", "KAIZEN_DRIFT_WINDOW_SECONDS": str(args.window_seconds)}
    if args.workers:
        env["KAIZEN_WORKERS"] = str(args.workers)
    log = args.work / "server.log"
    server = Server(args.source, env, log)
    try:
        lua = args.work / "predict-32.lua"
        lua.write_text(LUA.replace("""'{"instances":[[5.1,3.5,1.4,0.2]]}'""", "'" + BODY.decode() + "'"))
        rss = Rss(server.proc.pid)
        rss.samples.append(memory_mb(server.proc.pid)[0])
        probe = Probe(server.port)
        rss.start()
        probe.start()
        argv = ["taskset", "-c", "0", "wrk", "-t2", "-c16", f"-d{args.seconds}s", "--latency", "--timeout", "30s",
                "-s", str(lua), f"http://127.0.0.1:{server.port}/invocations"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 120, check=False).stdout
        probe.halt.set()
        rss.halt.set()
        probe.join()
        rss.join()
    finally:
        server.stop()
    load: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith("KAIZEN_BENCH "):
            load.update(json.loads(line.removeprefix("KAIZEN_BENCH ")))
        elif line.strip().startswith("Latency") and "latency_line" not in load:
            load["latency_line"] = " ".join(line.split())  # wrk's avg, stdev, max, +/- stdev
    seconds = sorted(probe.per_second)
    silent = [s for s in range(seconds[-1] + 1) if s not in probe.per_second] if seconds else []
    maxima = sorted(probe.per_second.values())
    events = [json.loads(line) for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    windows = sum(1 for e in events if e.get("event") == "drift")
    errors = [e for e in events if e.get("event") == "drift_error"]
    result = {
        "seconds": args.seconds, "window_seconds": args.window_seconds, "workers": args.workers,
        "wrk": load, "wrk_rps": round(load["requests"] / (load["duration_us"] / 1e6)) if load.get("requests") else None,
        "probe_answers": probe.answers, "probe_failures": probe.failures,
        "max_latency_ms": round(1000 * maxima[-1], 1) if maxima else None,
        "per_second_max_ms": {"median": round(1000 * maxima[len(maxima) // 2], 1) if maxima else None,
                              "p99": round(1000 * maxima[int(len(maxima) * 0.99) - 1], 1) if maxima else None},
        "slowest_seconds": sorted(((s, round(1000 * v, 1)) for s, v in probe.per_second.items()),
                                  key=lambda x: -x[1])[:5],
        "seconds_without_an_answer": silent[:20],
        "rss_mb": {"start": round(rss.samples[0], 1), "end": round(rss.samples[-1], 1),
                   "max": round(max(rss.samples), 1),
                   "after_60s": round(rss.samples[min(60, len(rss.samples) - 1)], 1)},
        "drift_windows_logged": windows, "drift_errors": errors[:5],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
