"""Where Kaizen's serving time goes: per-request CPU (py-spy under wrk load) and cold start.

    .venv/bin/python bench/serving/profile_kaizen.py [--rows 1] [--conns 16] [--duration 10]

Needs the package that bench/serving/run.py built (bench/results/serving-work/kaizen-package,
or kaizen-skops-package with --skops; run `run.py --servers kaizen,kaizen-skops` once) and py-spy
(`bench/serving/setup_peers.sh tools`).

1. Starts the server pinned to core 1, loads it with wrk (pinned to core 0) and samples it with
   `py-spy record --format raw` (--native: C frames too); prints self and inclusive time per function and per
   area (HTTP parsing, JSON, validation, sklearn, metrics, logging, event loop...). Raw stacks
   and a speedscope file land in bench/results/profile/.
2. Cold start: `python -X importtime` of the server module (top cumulative imports) and the
   phases to the first good answer.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

PROFILE_DIR = bench.RESULTS / "profile"

# First matching pattern (on "function (file)") names the area of a frame.
AREAS: list[tuple[str, str]] = [
    ("model: sklearn/numpy predict", r"sklearn/|site-packages/numpy/|scipy/|narwhals/"),
    ("model: onnxruntime", r"onnxruntime/|model_packages/loading\.py"),
    ("json encode/decode", r"json/|orjson|ujson|simdjson|msgspec"),
    ("validation / schema", r"serving/schema\.py|serving/codecs\.py|pydantic"),
    ("drift statistics hook", r"serving/drift\.py"),
    ("metrics (prometheus)", r"prometheus_client|serving/metrics\.py"),
    ("request logging", r"serving/logs\.py|logging/|lib/python3\.\d+/logging"),
    ("runtime glue (app/runner)",
     r"serving/(app|runner|runtime|openapi|router|routes|messages)\.py|serving/contracts/"),
    ("HTTP server / protocol", r"serving/server\.py|httptools|h11|uvicorn|aiohttp|http/server"),
    ("event loop / asyncio", r"uvloop|asyncio/|selectors"),
]


def area_of(frame: str) -> str | None:
    for name, pattern in AREAS:
        if re.search(pattern, frame):
            return name
    return None


def summarize(raw: Path, top: int) -> str:
    """Aggregate py-spy's collapsed stacks ("f1;f2;f3 count")."""
    self_time: collections.Counter[str] = collections.Counter()
    incl_time: collections.Counter[str] = collections.Counter()
    area_incl: collections.Counter[str] = collections.Counter()
    area_self: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # py-spy adds a thread/process frame first; drop "process"/"thread" pseudo-frames.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += count
        if not frames:
            continue
        leaf = frames[-1]
        self_time[leaf] += count
        for f in set(frames):
            incl_time[f] += count
        # Inclusive by area: the deepest Python frame that has an area wins for self time;
        # for inclusive, each area counted once per stack.
        seen: set[str] = set()
        for f in frames:
            a = area_of(f)
            if a and a not in seen:
                area_incl[a] += count
                seen.add(a)
        owner = next((a for a in (area_of(f) for f in reversed(frames)) if a), "other/native")
        area_self[owner] += count
    if not total:
        return "no samples"
    out = [f"{total} samples\n", "Self time by area (deepest frame with a known area):"]
    for name, c in area_self.most_common():
        out.append(f"  {100 * c / total:5.1f}%  {name}")
    out.append("\nInclusive time by area (a stack counts once per area):")
    for name, c in area_incl.most_common():
        out.append(f"  {100 * c / total:5.1f}%  {name}")
    out.append(f"\nTop {top} functions by self time:")
    for name, c in self_time.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {name[:150]}")
    out.append(f"\nTop {top} functions by inclusive time:")
    for name, c in incl_time.most_common(top):
        out.append(f"  {100 * c / total:5.1f}%  {name[:150]}")
    return "\n".join(out)


COLD_SCRIPT = """
import sys, time
t0 = time.perf_counter()
import model_packages.serving.server
t1 = time.perf_counter()
from model_packages.loading import load_model
model = load_model(sys.argv[1])
t2 = time.perf_counter()
print(f"PHASES import-server {1000 * (t1 - t0):.0f} ms, load_model {1000 * (t2 - t1):.0f} ms", file=sys.stderr)
"""


def import_profile(python: str, package: Path, top: int) -> str:
    """Where cold start goes: the server's imports plus load_model(package), by import."""
    env = {**os.environ, **bench.COMMON_ENV}
    result = subprocess.run(
        ["taskset", "-c", "1", python, "-X", "importtime", "-c", COLD_SCRIPT, str(package)],
        capture_output=True,
        text=True,
        env=env,
        cwd=bench.REPO,
        check=False,
    )
    rows: list[tuple[int, int, str]] = []  # (cumulative us, depth, module)
    phases = ""
    for line in result.stderr.splitlines():
        if line.startswith("PHASES "):
            phases = line.removeprefix("PHASES ")
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4)))
    total = sum(us for us, depth, _ in rows if depth == 0)
    out = [
        f"Cold start, in-process (pinned to core 1): {phases}; imports {total / 1000:.0f} ms in all.",
        "Slowest top-level imports (cumulative ms; the first importer pays):",
    ]
    out += [f"  {us / 1000:7.1f}  {name}" for us, depth, name in sorted(rows, reverse=True) if depth == 0][:top]
    libs: dict[str, int] = {}
    for us, depth, name in rows:
        if depth == 0:
            root = name.split(".")[0]
            libs[root] = libs.get(root, 0) + us
    heavy = sorted(libs.items(), key=lambda kv: -kv[1])[:8]
    out.append("By package (top-level imports summed, ms): " + ", ".join(f"{n} {us / 1000:.0f}" for n, us in heavy))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--skops", action="store_true", help="profile the skops-served package (kaizen-skops)")
    parser.add_argument("--native", action="store_true", help="sample C frames too (pauses the server)")
    parser.add_argument("--kaizen-python", default=str(bench.REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--work", type=Path, default=bench.RESULTS / "serving-work")
    args = parser.parse_args()

    package = args.work / ("kaizen-skops-package" if args.skops else "kaizen-package")
    if not (package / "kaizen.yaml").exists():
        parser.error(f"no package at {package}: run bench/serving/run.py --servers kaizen,kaizen-skops first")
    pyspy = bench.VENVS / "tools" / "bin" / "py-spy"
    if not pyspy.exists():
        parser.error("py-spy missing: bench/serving/setup_peers.sh tools")
    import numpy as np

    x = np.load(args.work / "sample.npy")[: args.rows]
    port = bench.free_port()
    server = bench.Server(
        name="kaizen",
        argv=[args.kaizen_python, "-m", "model_packages.serving"],
        cwd=bench.REPO,
        env={"KAIZEN_MODEL_DIR": str(package), "KAIZEN_HOST": "127.0.0.1", "PORT": str(port),
             "KAIZEN_SERVE_WITH": "source" if args.skops else "compiled"},
        path="/invocations",
        make_body=bench.instances_body,
        parse=bench.predictions_from_instances,
        port=port,
    )
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    run = bench.Running(server, args.work, "1", "profile")
    try:
        t0 = time.monotonic()
        body = server.make_body(x)
        while True:
            try:
                status, _ = bench.post(server.url, body, timeout=1)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"server did not answer:\n{run.log_tail()}")
            time.sleep(0.01)
        print(f"first good answer after {time.monotonic() - run.started:.2f} s (unloaded profile run)")
        lua = PROFILE_DIR / "body.lua"
        lua.write_text(bench.LUA.format(body=body.decode()))
        bench.wrk(server.url, lua, args.conns, 2, "0")  # warm-up
        raw = PROFILE_DIR / f"kaizen{'-skops' if args.skops else ''}-{args.rows}row-c{args.conns}.txt"
        # --native shows time inside C extensions but must pause the process for each sample.
        mode = ["--native"] if args.native else ["--nonblocking"]
        spy = subprocess.Popen(
            [str(pyspy), "record", "--pid", str(run.pid), "--rate", str(args.rate), "--format", "raw",
             "--duration", str(int(args.duration)), "--output", str(raw), *mode],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        time.sleep(0.5)
        cpu0 = bench.cpu_seconds(run.pid)
        stats = bench.wrk(server.url, lua, args.conns, args.duration - 1, "0")
        cpu = bench.cpu_seconds(run.pid) - cpu0
        _, err = spy.communicate(timeout=args.duration + 60)
        rps = stats["requests"] / (stats["duration_us"] / 1e6)
        print(
            f"load under py-spy ({args.rows} row(s), c{args.conns}): {rps:.0f} req/s, "
            f"{cpu * 1000 / max(stats['requests'], 1):.3f} CPU ms/req (sampling inflates this a bit)"
        )
        if spy.returncode != 0:
            print(f"py-spy failed: {err}")
        else:
            print(summarize(raw, args.top))
            print(f"\nraw stacks: {raw}")
    finally:
        run.stop()
    print()
    print(import_profile(args.kaizen_python, package, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
