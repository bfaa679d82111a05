"""Serving under hostile and mixed load: /ping p99 beside big batches, worker scaling, a soak.

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/serving/hostile.py ping     # /ping p99 under big batches
    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/serving/hostile.py workers  # req/s with 1 and 2 workers
    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/serving/hostile.py soak     # 2 min, 64 conns + attackers

Every server serves examples/iris-classifier (compiled ONNX) on 127.0.0.1; wrk is pinned to core 0.
`--source DIR` runs the runtime from another checkout (e.g. the code before issue 9) for a before/after.
`ping`: wrk 1-row /invocations at --small-conns (16; 0 = none) connections, 2 clients looping
20,000-row (KAIZEN_MAX_ROWS) probability batches, and a probe sending GET /ping every 10 ms on one
keep-alive connection; reports the probe's p50/p99/max.
`workers`: wrk -t1 -c64 1-row /invocations against KAIZEN_WORKERS=1 and 2 (server not pinned).
`soak`: wrk -c64 on /invocations for --seconds (120) with 200 idle and 20 slowloris connections that
reconnect whenever the server closes them, the /ping probe, and RSS of the process tree at start and end.
Prints JSON; writes it to bench/results/hostile-<command>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from bench.serving.run import children_cpu_seconds, cpu_seconds, machine_busy_seconds, memory_mb, tree  # noqa: E402
from tests.support import free_port  # noqa: E402

PACKAGE = REPO / "examples" / "iris-classifier"
ROW = [5.1, 3.5, 1.4, 0.2]
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances":[[5.1,3.5,1.4,0.2]]}'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('KAIZEN_BENCH {"requests":%d,"duration_us":%d,"errors":%d,"status":%d,"p50_us":%d,' ..
    '"p99_us":%d}\\n', summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


class Server:
    """A runtime process on 127.0.0.1 (stopped by pid)."""

    def __init__(self, source: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith(("KAIZEN_", "AIP_")) and k != "PORT"}
        full.update({"KAIZEN_MODEL_DIR": str(PACKAGE), "KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(self.port),
                     "KAIZEN_LOG_REQUESTS": "false", "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", **env})
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "model_packages.serving"], cwd=source, env=full,
                                         stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http(self.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
                        b"HTTP/1.1 200"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(port: int, raw: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def wrk(port: int, conns: int, seconds: int, work: Path, threads: int = 2) -> dict[str, Any]:
    lua = work / "predict.lua"
    lua.write_text(LUA)
    argv = ["taskset", "-c", "0", "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency",
            "--timeout", "5s", "-s", str(lua), f"http://127.0.0.1:{port}/invocations"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    for line in out.splitlines():
        if line.startswith("KAIZEN_BENCH "):
            result = json.loads(line.removeprefix("KAIZEN_BENCH "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk failed: {out}")


class OtherLoad:
    """Cores kept busy by processes other than the server tree, wrk and this script (a shared machine)."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.start = (time.monotonic(), machine_busy_seconds(), cpu_seconds(server_pid), children_cpu_seconds(),
                      time.process_time())

    def cores(self) -> float:
        t0, busy0, server0, children0, own0 = self.start
        ours = (cpu_seconds(self.pid) - server0) + (children_cpu_seconds() - children0) + (time.process_time() - own0)
        return round(max(0.0, (machine_busy_seconds() - busy0 - ours) / (time.monotonic() - t0)), 2)


class PingProbe(threading.Thread):
    """GET /ping every `every` seconds on one keep-alive connection (reconnects if closed)."""

    def __init__(self, port: int, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.latencies: list[float] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        sock = None
        while not self.halt.is_set():
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionResetError
                    reply += chunk
                if not reply.startswith(b"HTTP/1.1 200"):
                    self.failures += 1
                self.latencies.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1
                if sock is not None:
                    sock.close()
                sock = None
            time.sleep(max(0.0, self.every - (time.perf_counter() - started)))

    def summary(self) -> dict[str, Any]:
        ms = sorted(x * 1000 for x in self.latencies)
        return {"probes": len(ms), "failures": self.failures, "p50_ms": round(statistics.median(ms), 2),
                "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2), "max_ms": round(ms[-1], 2)}


def batch_client(port: int, rows: int, halt: threading.Event, done: list[float]) -> None:
    body = json.dumps({"instances": [ROW] * rows, "parameters": {"probabilities": True}}).encode()
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body))
    while not halt.is_set():
        started = time.perf_counter()
        reply = http(port, head + body, timeout=60)
        if reply.startswith(b"HTTP/1.1 200"):
            done.append(time.perf_counter() - started)


def cmd_ping(args: argparse.Namespace) -> dict[str, Any]:
    server = Server(args.source, {"KAIZEN_WORKERS": "1"}, args.work / "ping.log")
    try:
        probe, halt, batches = PingProbe(server.port), threading.Event(), []
        other = OtherLoad(server.proc.pid)
        probe.start()
        clients = [threading.Thread(target=batch_client, args=(server.port, args.rows, halt, batches), daemon=True)
                   for _ in range(2)]
        for client in clients:
            client.start()
        load = wrk(server.port, args.small_conns, args.seconds, args.work) if args.small_conns else None
        if load is None:
            time.sleep(args.seconds)
        halt.set()
        probe.halt.set()
        probe.join()
        for client in clients:
            client.join(timeout=60)
        return {"source": str(args.source), "batch_rows": args.rows, "batches": len(batches),
                "batch_median_s": round(statistics.median(batches), 3) if batches else None,
                "small_conns": args.small_conns, "small_rps": round(load["rps"]) if load else 0,
                "small_p99_ms": load["p99_us"] / 1000 if load else None,
                "errors": load["errors"] + load["status"] if load else 0, "ping": probe.summary(),
                "other_load_cores": other.cores()}
    finally:
        server.stop()


def cmd_workers(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for workers in (1, 2):
        server = Server(args.source, {"KAIZEN_WORKERS": str(workers)}, args.work / f"workers-{workers}.log")
        try:
            wrk(server.port, 64, 3, args.work, threads=1)  # warm-up
            other = OtherLoad(server.proc.pid)
            load = wrk(server.port, 64, args.seconds, args.work, threads=1)
            rows.append({"workers": workers, "rps": round(load["rps"]), "p50_ms": load["p50_us"] / 1000,
                         "p99_ms": load["p99_us"] / 1000, "errors": load["errors"] + load["status"],
                         "other_load_cores": other.cores()})
        finally:
            server.stop()
    return {"source": str(args.source), "rows": rows}


class Attackers(threading.Thread):
    """`idle` connections that send nothing and `slow` ones that trickle a header byte a second; all reconnect."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        super().__init__(daemon=True)
        self.port, self.idle, self.slow = port, idle, slow
        self.halt = threading.Event()
        self.reconnects = 0

    def run(self) -> None:
        head = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        conns: list[tuple[socket.socket, int]] = []  # (socket, bytes of `head` sent; -1 = idle)

        def opened(kind: int) -> tuple[socket.socket, int]:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.setblocking(False)
            self.reconnects += 1
            return sock, kind

        conns = [opened(-1) for _ in range(self.idle)] + [opened(0) for _ in range(self.slow)]
        while not self.halt.is_set():
            for i, (sock, sent) in enumerate(conns):
                try:
                    if sock.recv(65536) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    conns[i] = opened(-1 if sent < 0 else 0)
                    continue
                if sent >= 0:
                    try:
                        sock.send(head[sent:sent + 1])
                        conns[i] = (sock, sent + 1)
                    except OSError:
                        sock.close()
                        conns[i] = opened(0)
            self.halt.wait(1.0)
        for sock, _ in conns:
            sock.close()


def cmd_soak(args: argparse.Namespace) -> dict[str, Any]:
    server = Server(args.source, {}, args.work / "soak.log")
    try:
        wrk(server.port, 64, 5, args.work)  # warm-up
        attackers = Attackers(server.port, 200, 20)
        attackers.start()
        time.sleep(2)
        rss_start = memory_mb(server.proc.pid)[0]
        probe = PingProbe(server.port, every=0.02)
        other = OtherLoad(server.proc.pid)
        probe.start()
        load = wrk(server.port, 64, args.seconds, args.work)
        probe.halt.set()
        probe.join()
        rss_end = memory_mb(server.proc.pid)[0]
        attackers.halt.set()
        attackers.join()
        return {"source": str(args.source), "seconds": args.seconds, "processes": len(tree(server.proc.pid)),
                "rps": round(load["rps"]), "p99_ms": load["p99_us"] / 1000,
                "errors": load["errors"] + load["status"], "requests": load["requests"],
                "attacker_reconnects": attackers.reconnects, "ping": probe.summary(),
                "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
                "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 1), "other_load_cores": other.cores()}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("ping", "workers", "soak"))
    parser.add_argument("--seconds", type=int, default=None, help="load duration (ping 20, workers 10, soak 120)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per big batch (ping; KAIZEN_MAX_ROWS)")
    parser.add_argument("--small-conns", type=int, default=16, help="wrk connections of 1-row load beside (ping)")
    parser.add_argument("--source", type=Path, default=REPO, help="checkout whose runtime to run")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "hostile-work")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or {"ping": 20, "workers": 10, "soak": 120}[args.command]
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"ping": cmd_ping, "workers": cmd_workers, "soak": cmd_soak}[args.command](args)
    result["machine_cpus"] = len(os.sched_getaffinity(0))
    out = args.out or REPO / "bench" / "results" / f"hostile-{args.command}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
