"""Serving benchmark: Kaizen against MLflow, BentoML and Seldon MLServer on the same model.

    .venv/bin/python bench/serving/run.py   # all servers; --servers kaizen,mlflow to pick

It first runs bench/serving/setup_peers.sh (one virtualenv per peer, outside the checkout, from
PyPI; a no-op when they are up to date).

One scikit-learn pipeline (StandardScaler + LogisticRegression on breast_cancer, 30 features) is
trained here, saved in every peer's format and as a Kaizen package, and each server is started
on 127.0.0.1 and loaded with `wrk` (POST bodies from a Lua script): 1-row and 32-row JSON bodies
at concurrency 1 (-t1 -c1) and 16 (-t2 -c16). Measured per server and case: req/s, p50/p99
(wrk's latency histogram), server CPU ms per request (utime+stime of the server's process tree
from /proc, before/after, divided by completed requests); per server: cold start (process start
to first correct answer, median of --cold-starts) and RSS/PSS of the process tree after the load.

With 2+ cores wrk is pinned to core 0 and the server (with all its children) to core 1
(`taskset`), so the client never steals the server's CPU; --no-pin turns that off.
Every answer used in the load is checked first against the local sklearn prediction.
All servers stay up (idle ones on the same core) and the runs go rounds x cases x servers,
interleaved, so background load on a shared machine hits every server alike (--sequential:
one server at a time); --repeat N keeps the median run per case; --nice -10 (root) raises the
priority of the servers and wrk over other sessions' jobs. MLServer runs twice: with its
default parallel_workers=1 (`mlserver`) and with inference in-process (`mlserver-inproc`).
`kaizen-uvicorn` and `kaizen-granian` serve the same Kaizen App and package behind uvicorn (httptools,
uvloop) and granian through model_packages/serving/asgi.py: the proof for Kaizen's own transport (the
targets table applies the issue's rule: switch if one is within 15% in req/s and CPU per request).

Prints a markdown table; writes JSON to bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.image.localregistry import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results"
VENVS = Path(
    os.environ.get("KAIZEN_BENCH_VENVS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaizen" / "bench-venvs"
)
MODEL_NAME = "bench-clf"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ALL_SERVERS = ("kaizen", "kaizen-skops", "kaizen-uvicorn", "kaizen-granian", "mlflow", "bentoml", "mlserver",
               "mlserver-inproc")
KAIZENS = ("kaizen", "kaizen-skops")
# The same Kaizen App and package behind well-kept servers (model_packages/serving/asgi.py): the transport proof.
TRANSPORTS = ("kaizen-uvicorn", "kaizen-granian")
LOCAL = KAIZENS + TRANSPORTS
PEER_VENV = {"mlflow": "mlflow", "bentoml": "bentoml", "mlserver": "mlserver", "mlserver-inproc": "mlserver"}
CASES = (("1-row", 1, 1), ("1-row", 1, 16), ("32-row", 32, 1), ("32-row", 32, 16))

# Same environment for every server: no telemetry, one BLAS thread (the server is pinned to
# one core, so extra BLAS threads would only contend).
COMMON_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "DO_NOT_TRACK": "1",
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONUNBUFFERED": "1",
}


# --------------------------------------------------------------------------- model and bodies


@dataclass
class Workload:
    x_test: np.ndarray
    expected: list[Any]  # sklearn's local predictions for x_test
    model_path: Path


#: The benchmark's models (`--model`): every server serves the same fitted estimator.
MODELS = ("linear", "trees")


def make_estimator(kind: str) -> Any:
    """linear: StandardScaler + LogisticRegression; trees: a GradientBoostingClassifier (100 trees
    of depth 3, scikit-learn's defaults), the tree ensemble Kaizen compiles to ONNX."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "trees":
        return GradientBoostingClassifier(random_state=0)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def train(work: Path, kind: str = "linear") -> Workload:
    """Train the one model of the benchmark and dump it for the peers' save scripts."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data: Any = load_breast_cancer()
    x_train, x_test, y_train, _ = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    model = make_estimator(kind).fit(x_train, y_train)
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / "model.joblib"
    joblib.dump(model, model_path)
    np.save(work / "sample.npy", x_train[:32])
    np.save(work / "x_train.npy", x_train)
    np.save(work / "y_train.npy", y_train)
    expected = [int(v) for v in model.predict(x_test)]
    return Workload(x_test=np.asarray(x_test), expected=expected, model_path=model_path)


def rows_for(workload: Workload, n: int) -> np.ndarray:
    return workload.x_test[:n]


def instances_body(rows: np.ndarray) -> bytes:
    return json.dumps({"instances": rows.tolist()}).encode()


def v2_body(rows: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    ).encode()


def predictions_from_instances(doc: Any) -> list[Any]:
    return list(doc["predictions"])


def predictions_from_v2(doc: Any) -> list[Any]:
    return list(doc["outputs"][0]["data"])


def same_predictions(got: list[Any], want: list[Any]) -> bool:
    def norm(v: Any) -> str:
        if isinstance(v, list) and len(v) == 1:
            v = v[0]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return str(v)

    return len(got) == len(want) and all(norm(a) == norm(b) for a, b in zip(got, want, strict=True))


# --------------------------------------------------------------------------- /proc


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """The pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory_mb(root: int) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) over the process tree, in MB (PSS splits shared pages fairly)."""
    rss = pss = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
    return rss / 2**20, pss / 2**20


# --------------------------------------------------------------------------- servers


def set_autogroup_nice(pid: int, nice: int) -> None:
    """With sched_autogroup on, CPU is shared between sessions first, so `nice` alone does
    not help against other sessions' jobs: the server and wrk each run in a session of their
    own, and this sets that session's autogroup nice (as root; a no-op when nice is 0)."""
    if nice:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))


@dataclass
class Server:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    path: str  # the load route
    make_body: Callable[[np.ndarray], bytes]
    parse: Callable[[Any], list[Any]]
    port: int
    versions: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def versions_of(python: Path | str, dists: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def peer_save(peer: str, workload: Workload, work: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [
            str(venv_python(peer)),
            str(HERE / "peer_models.py"),
            peer,
            str(workload.model_path),
            str(work),
            MODEL_NAME,
        ],
        check=True,
        env=env,
        cwd=work,
    )


def kaizen_source_sha() -> str:
    """Short hash of model_packages/**/*.py, to tell which runtime code a result measured."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "model_packages").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def kaizen_maker(
    name: str, serve_with: str, transport: str = "kaizen"
) -> Callable[[Workload, Path, argparse.Namespace], Server]:
    """Kaizen serving the benchmark model as `kaizen package` makes it: the skops artifact plus a
    double-precision ONNX serving artifact checked against scikit-learn on every training row.
    `kaizen` serves the compiled artifact (the default); `kaizen-skops` serves the skops artifact
    with scikit-learn (`KAIZEN_SERVE_WITH=source`)."""

    def make(workload: Workload, work: Path, args: argparse.Namespace) -> Server:
        import joblib
        from sklearn.datasets import load_breast_cancer

        from model_packages.package import create_package

        x_train = np.load(work / "x_train.npy")
        y_train = np.load(work / "y_train.npy")
        data: Any = load_breast_cancer()
        names = [str(n).replace(" ", "_") for n in data.feature_names]
        estimator = joblib.load(workload.model_path)
        package = work / f"{name}-package"
        create_package(
            estimator,
            x_train,
            y_train,
            out_dir=package,
            name=MODEL_NAME,
            version="1.0.0",
            feature_names=names,
            ranges={n: (0.0, float(x_train[:, i].max()) * 10) for i, n in enumerate(names)},
            description="serving benchmark model",
            overwrite=True,
        )
        onnx = serve_with == "compiled"
        port = free_port()
        python = Path(args.kaizen_python)
        env = {"KAIZEN_MODEL_DIR": str(package), "KAIZEN_HOST": "127.0.0.1", "PORT": str(port),
               "KAIZEN_SERVE_WITH": serve_with, "KAIZEN_WORKERS": "1"}  # the server is pinned to one core
        dists = ["kaizen-ml", "httptools", "uvloop", "scikit-learn", "numpy"]
        if transport != "kaizen":
            dists.append(transport)
        if onnx:
            dists.append("onnxruntime")
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        return Server(
            name=name,
            argv=[str(python), "-m", "model_packages.serving"] if transport == "kaizen"
            else [str(python), "-m", "model_packages.serving.asgi", transport],
            cwd=REPO,
            env=env,
            path="/invocations",
            make_body=instances_body,
            parse=predictions_from_instances,
            port=port,
            versions={
                **versions_of(python, dists),
                "model_packages source sha256": kaizen_source_sha(),
                "git HEAD": head.stdout.strip(),
            },
            note=f"{'ONNX' if onnx else 'skops'} package; POST /invocations {{instances}}; "
            "validation, metrics and request logs on (defaults)"
            + ("" if transport == "kaizen" else f"; the same App behind {transport} (ASGI)"),
        )

    return make


def make_mlflow(workload: Workload, work: Path, args: argparse.Namespace) -> Server:
    env = {"MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}"}
    peer_save("mlflow", workload, work, {**os.environ, **COMMON_ENV, **env})
    port = free_port()
    mlflow = VENVS / "mlflow" / "bin" / "mlflow"
    argv = [
        str(mlflow),
        "models",
        "serve",
        "-m",
        str(work / "mlflow-model"),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(args.peer_workers),
    ]
    return Server(
        name="mlflow",
        argv=argv,
        cwd=work,
        env=env,
        path="/invocations",
        make_body=instances_body,
        parse=predictions_from_instances,
        port=port,
        versions=versions_of(venv_python("mlflow"), ["mlflow", "uvicorn", "fastapi", "scikit-learn", "numpy"]),
        note=f"mlflow models serve --env-manager local -w {args.peer_workers}; POST /invocations {{instances}}",
    )


def make_bentoml(workload: Workload, work: Path, args: argparse.Namespace) -> Server:
    env = {
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENCH_BENTO_MODEL": f"{MODEL_NAME}:latest",
        "BENCH_BENTO_WORKERS": str(args.peer_workers),
    }
    shutil.rmtree(work / "bentoml-home", ignore_errors=True)
    peer_save("bentoml", workload, work, {**os.environ, **COMMON_ENV, **env})
    port = free_port()
    bentoml = VENVS / "bentoml" / "bin" / "bentoml"
    argv = [
        str(bentoml),
        "serve",
        "bento_service:BenchClassifier",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Server(
        name="bentoml",
        argv=argv,
        cwd=work,
        env=env,
        path="/predict",
        make_body=instances_body,
        parse=predictions_from_instances,
        port=port,
        versions=versions_of(venv_python("bentoml"), ["bentoml", "uvicorn", "starlette", "scikit-learn", "numpy"]),
        note=f"@bentoml.service(workers={args.peer_workers}), one @bentoml.api; POST /predict {{instances}}",
    )


def mlserver_maker(name: str, parallel_workers: int) -> Callable[[Workload, Path, argparse.Namespace], Server]:
    """MLServer with a given `parallel_workers`: 1 is its default (inference in a worker
    process, over IPC); 0 runs inference in the server process, which is faster on one core."""

    def make(workload: Workload, work: Path, args: argparse.Namespace) -> Server:
        peer_save("mlserver", workload, work, {**os.environ, **COMMON_ENV})
        model_dir = work / f"{name}-model"
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.copytree(work / "mlserver-artifact", model_dir)
        port = free_port()
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": parallel_workers,
            "debug": False,
        }
        (model_dir / "settings.json").write_text(json.dumps(settings, indent=2))
        mlserver = VENVS / "mlserver" / "bin" / "mlserver"
        dists = ["mlserver", "mlserver-sklearn", "uvloop", "uvicorn", "fastapi", "scikit-learn"]
        return Server(
            name=name,
            argv=[str(mlserver), "start", str(model_dir)],
            cwd=model_dir,
            env={},
            path=f"/v2/models/{MODEL_NAME}/infer",
            make_body=v2_body,
            parse=predictions_from_v2,
            port=port,
            versions=versions_of(venv_python("mlserver"), [*dists, "numpy"]),
            note=f"mlserver start, parallel_workers={parallel_workers}; POST V2 infer (FP64 tensor)",
        )

    return make


MAKERS: dict[str, Callable[[Workload, Path, argparse.Namespace], Server]] = {
    "kaizen": kaizen_maker("kaizen", serve_with="compiled"),
    "kaizen-skops": kaizen_maker("kaizen-skops", serve_with="source"),
    "kaizen-uvicorn": kaizen_maker("kaizen-uvicorn", serve_with="compiled", transport="uvicorn"),
    "kaizen-granian": kaizen_maker("kaizen-granian", serve_with="compiled", transport="granian"),
    "mlflow": make_mlflow,
    "bentoml": make_bentoml,
    "mlserver": mlserver_maker("mlserver", 1),
    "mlserver-inproc": mlserver_maker("mlserver-inproc", 0),
}


class Running:
    """A started server; stop() ends exactly the processes of its tree (by pid)."""

    def __init__(self, server: Server, work: Path, cpu: str | None, tag: str, nice: int = 0) -> None:
        self.server = server
        self.log_path = work / "logs" / f"{server.name}-{tag}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        prefix = ["taskset", "-c", cpu] if cpu is not None else []
        if nice:
            prefix = ["nice", "-n", str(nice), *prefix]
        env = {**os.environ, **COMMON_ENV, **server.env}
        bindir = str(Path(server.argv[0]).parent)  # peers shell out to their venv's tools (uvicorn)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env["VIRTUAL_ENV"] = str(Path(bindir).parent)
        with open(self.log_path, "wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                prefix + server.argv,
                cwd=server.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        set_autogroup_nice(self.proc.pid, nice)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        pids = tree(self.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not any(Path(f"/proc/{p}").exists() for p in pids[1:]):
                break
            time.sleep(0.05)
        for pid in pids:  # whatever of the tree is still there after the grace period
            if Path(f"/proc/{pid}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_first_good(run: Running, body: bytes, want: list[Any], timeout: float) -> float:
    """Seconds from process start to the first correct answer (polled every 10 ms)."""
    server = run.server
    deadline = run.started + timeout
    last = ""
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {run.proc.returncode}:\n{run.log_tail()}")
        try:
            status, raw = post(server.url, body, timeout=2.0)
            if status == 200 and same_predictions(server.parse(json.loads(raw)), want):
                return time.monotonic() - run.started
            last = f"HTTP {status}: {raw[:300]!r}"
        except (OSError, ValueError, KeyError) as exc:
            last = repr(exc)
        time.sleep(0.01)
    raise RuntimeError(f"{server.name}: no correct answer in {timeout:.0f} s (last: {last})\n{run.log_tail()}")


# --------------------------------------------------------------------------- wrk

LUA = """-- generated by bench/serving/run.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'KAIZEN_BENCH {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrk(url: str, lua: Path, conns: int, seconds: float, cpu: str | None, nice: int = 0) -> dict[str, Any]:
    threads = 1 if conns == 1 else 2
    prefix = ["taskset", "-c", cpu] if cpu is not None else []
    if nice:
        prefix = ["nice", "-n", str(nice), *prefix]
    argv = [
        *prefix,
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(lua),
        url,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    set_autogroup_nice(proc.pid, nice)
    try:
        out, err = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("KAIZEN_BENCH "):
            return json.loads(line.removeprefix("KAIZEN_BENCH "))
    raise RuntimeError(f"wrk failed ({proc.returncode}): {out}\n{err}")


# --------------------------------------------------------------------------- one server


@dataclass
class Prepared:
    """A server that is up, answered correctly, and has its wrk scripts."""

    server: Server
    run: Running
    bodies: dict[int, Path]
    result: dict[str, Any]
    tries: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)


def start_server(server: Server, workload: Workload, work: Path, args: argparse.Namespace) -> Prepared:
    """Cold starts (median of N, the last process stays up), then correctness checks."""
    want1 = workload.expected[:1]
    body1 = server.make_body(rows_for(workload, 1))
    result: dict[str, Any] = {
        "server": server.name,
        "versions": server.versions,
        "note": server.note,
    }
    colds: list[float] = []
    run: Running | None = None
    for i in range(args.cold_starts):
        if run is not None:
            run.stop()
        run = Running(server, work, args.server_cpu, f"start{i}", args.nice)
        try:
            colds.append(wait_first_good(run, body1, want1, args.start_timeout))
        except BaseException:
            run.stop()
            raise
    assert run is not None
    result["cold_start_s"] = statistics.median(colds)
    result["cold_start_all_s"] = [round(c, 3) for c in colds]
    try:
        # Correctness on every body of the load, and the whole test split, against sklearn.
        bodies: dict[int, Path] = {}
        checks: dict[str, bool] = {}
        for n in sorted({n for _, n, _ in CASES}):
            body = server.make_body(rows_for(workload, n))
            status, raw = post(server.url, body)
            ok = status == 200 and same_predictions(server.parse(json.loads(raw)), workload.expected[:n])
            checks[f"{n}-row"] = ok
            if not ok:
                raise RuntimeError(f"{server.name}: wrong answer for {n} rows: HTTP {status} {raw[:300]!r}")
            lua = work / "lua" / f"{server.name}-{n}.lua"
            lua.parent.mkdir(parents=True, exist_ok=True)
            lua.write_text(LUA.format(body=body.decode()))
            bodies[n] = lua
        status, raw = post(server.url, server.make_body(workload.x_test))
        checks["test-set"] = status == 200 and same_predictions(server.parse(json.loads(raw)), workload.expected)
        result["correct"] = all(checks.values())
        result["checks"] = checks
        # Warm-up (not measured).
        for n in bodies:
            wrk(server.url, bodies[n], 16, args.warmup, args.wrk_cpu, args.nice)
    except BaseException:
        run.stop()
        raise
    return Prepared(server=server, run=run, bodies=bodies, result=result)


def finish_server(prep: Prepared) -> dict[str, Any]:
    """Median try per case (by req/s), memory after the load, stop the server."""
    result = prep.result
    try:
        cases = []
        for label, n, conns in CASES:
            tries = prep.tries.get((n, conns), [])
            if not tries:
                continue
            case = dict(sorted(tries, key=lambda c: c["rps"])[len(tries) // 2])
            if len(tries) > 1:
                case["tries_rps"] = [round(c["rps"]) for c in tries]
                case["tries_p99_ms"] = [round(c["p99_ms"], 2) for c in tries]
                case["tries_cpu_ms_per_req"] = [round(c["cpu_ms_per_req"], 3) for c in tries]
            cases.append(case)
            del label
        result["cases"] = cases
        rss, pss = memory_mb(prep.run.pid)
        result["rss_mb"] = rss
        result["pss_mb"] = pss
        result["processes"] = len(tree(prep.run.pid))
    finally:
        prep.run.stop()
    return result


def load_all(preps: list[Prepared], args: argparse.Namespace) -> None:
    """Rounds x cases x servers, interleaved, so every server sees the same background load.

    Only the server under test gets requests; the others sit idle on the same core."""
    for round_ in range(args.repeat):
        for label, n, conns in CASES:
            for prep in preps:
                if prep.result.get("error"):
                    continue
                try:
                    case = measure(prep.run, prep.server, prep.bodies[n], label, n, conns, args)
                except Exception as exc:
                    prep.result["error"] = f"load: {exc}"
                    continue
                prep.tries.setdefault((n, conns), []).append(case)
                print(
                    f"  [{round_ + 1}/{args.repeat}] {prep.server.name:9s} {label:6s} "
                    f"c{conns:<3d} {case['rps']:9.0f} req/s"
                    f"  p50 {case['p50_ms']:7.2f} ms  p99 {case['p99_ms']:7.2f} ms"
                    f"  cpu {case['cpu_ms_per_req']:6.3f} ms/req  errors {case['errors']}"
                    f"  (other load {case['other_cpu_util']:.2f} cores)",
                    file=sys.stderr,
                    flush=True,
                )


def measure(
    run: Running,
    server: Server,
    lua: Path,
    label: str,
    n: int,
    conns: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One wrk run against a running server, with the server tree's and the machine's CPU."""
    before, busy0, wrk0 = cpu_seconds(run.pid), machine_busy_seconds(), children_cpu_seconds()
    stats = wrk(server.url, lua, conns, args.duration, args.wrk_cpu, args.nice)
    used = cpu_seconds(run.pid) - before
    wrk_used = children_cpu_seconds() - wrk0
    # CPU burnt by anything else on the machine meanwhile (other jobs skew the numbers).
    other = machine_busy_seconds() - busy0 - used - wrk_used
    errors = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    done = max(stats["requests"], 1)
    seconds = stats["duration_us"] / 1e6
    return {
        "case": label,
        "rows": n,
        "concurrency": conns,
        "requests": stats["requests"],
        "errors": errors,
        "rps": stats["requests"] / seconds,
        "p50_ms": stats["p50_us"] / 1000,
        "p90_ms": stats["p90_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "max_ms": stats["max_us"] / 1000,
        "cpu_ms_per_req": used * 1000 / done,
        "server_cpu_util": used / seconds,
        "wrk_cpu_util": wrk_used / seconds,
        "other_cpu_util": max(other, 0.0) / seconds,
    }


# --------------------------------------------------------------------------- report


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| server | case | conc. | req/s | p50 ms | p99 ms | CPU ms/req | errors | cold start s "
        "| RSS MB (PSS) "
        "| other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['server']} | FAILED: {r['error'].splitlines()[0][:80]} | | | | | | | | | |")
            continue
        for i, c in enumerate(r["cases"]):
            extra = (f"{r['cold_start_s']:.2f}", f"{r['rss_mb']:.0f} ({r['pss_mb']:.0f})") if i == 0 else ("", "")
            lines.append(
                f"| {r['server'] if i == 0 else ''} | {c['case']} | {c['concurrency']} "
                f"| {c['rps']:.0f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} "
                f"| {c['cpu_ms_per_req']:.3f} | {c['errors']} | "
                f"{extra[0]} | {extra[1]} | {c['other_cpu_util']:.2f} |"
            )
    return "\n".join(lines)


def targets(results: list[dict[str, Any]], tree_factor: float | None = None) -> list[dict[str, Any]]:
    """Each Kaizen variant against the issue's targets. Best peer: the highest 1-row c16 req/s,
    and (for p99) the lowest 1-row c16 p99 among the peers. With `tree_factor` (the tree model),
    the compiled variant must also reach that many times the best peer's 1-row c16 req/s."""
    by = {r["server"]: r for r in results if "cases" in r}

    def case(r: dict[str, Any], rows: int, conc: int) -> dict[str, Any]:
        return next(c for c in r["cases"] if c["rows"] == rows and c["concurrency"] == conc)

    peers = [r for name, r in by.items() if name not in LOCAL]
    out: list[dict[str, Any]] = []
    if "kaizen" in by:  # the rule: switch to a well-kept server within 15% in req/s and CPU/request
        own = by["kaizen"]
        for name in TRANSPORTS:
            if name not in by:
                continue
            for rows, conc in ((1, 1), (1, 16), (32, 16)):
                mine, theirs = case(own, rows, conc), case(by[name], rows, conc)
                rps = theirs["rps"] / mine["rps"]
                cpu = theirs["cpu_ms_per_req"] / mine["cpu_ms_per_req"]
                out.append({
                    "server": name,
                    "target": f"{rows}-row c{conc}: within 15% of Kaizen's transport (req/s and CPU/request)",
                    "value": f"{rps:.2f}x req/s, {cpu:.2f}x CPU/request",
                    "ok": rps >= 0.85 and cpu <= 1.15,
                })
    for name in KAIZENS:
        if name not in by:
            continue
        k = by[name]
        k16 = case(k, 1, 16)

        def add(target: str, value: str, ok: bool, name: str = name) -> None:
            out.append({"server": name, "target": target, "value": value, "ok": ok})

        if peers:
            best = max(peers, key=lambda r: case(r, 1, 16)["rps"])
            b16 = case(best, 1, 16)
            best_p99 = min(peers, key=lambda r: case(r, 1, 16)["p99_ms"])
            p16 = case(best_p99, 1, 16)
            add(
                f"1-row c16 req/s >= 2x best peer ({best['server']} {b16['rps']:.0f})",
                f"{k16['rps']:.0f} ({k16['rps'] / b16['rps']:.2f}x)",
                k16["rps"] >= 2 * b16["rps"],
            )
            if tree_factor is not None and name == "kaizen":
                add(
                    f"tree ensemble, compiled: 1-row c16 req/s >= {tree_factor:g}x best peer "
                    f"({best['server']} {b16['rps']:.0f})",
                    f"{k16['rps']:.0f} ({k16['rps'] / b16['rps']:.2f}x)",
                    k16["rps"] >= tree_factor * b16["rps"],
                )
            add(
                f"1-row c16 p99 <= half of best peer's ({best_p99['server']} {p16['p99_ms']:.2f} ms)",
                f"{k16['p99_ms']:.2f} ms",
                k16["p99_ms"] <= p16["p99_ms"] / 2,
            )
        c1 = case(k, 1, 1)["cpu_ms_per_req"]
        add(
            "CPU <= 0.7 ms per 1-row request (c1 / c16)",
            f"{c1:.3f} / {k16['cpu_ms_per_req']:.3f} ms",
            max(c1, k16["cpu_ms_per_req"]) <= 0.7,
        )
        add("cold start <= 1.5 s", f"{k['cold_start_s']:.2f} s", k["cold_start_s"] <= 1.5)
        add("RSS <= 200 MB", f"{k['rss_mb']:.0f} MB", k["rss_mb"] <= 200)
    return out


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    print(f"== {what}", file=sys.stderr, flush=True)
    yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help="comma-separated subset of " + ",".join(ALL_SERVERS),
    )
    parser.add_argument("--model", choices=MODELS, default="linear",
                        help="linear: scaler + logistic regression (default); trees: GradientBoostingClassifier")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk case (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up per body")
    parser.add_argument("--cold-starts", type=int, default=3, help="starts per server for the cold-start median")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--peer-workers", type=int, default=1, help="worker processes for MLflow and BentoML")
    parser.add_argument("--repeat", type=int, default=1, help="wrk runs per case; the median by req/s is kept")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers and wrk at nice N, also as their sessions' autogroup nice (e.g. -10 as "
        "root on a shared, busy machine)",
    )
    parser.add_argument(
        "--sequential",
        dest="interleave",
        action="store_false",
        help="load one server at a time (default: all servers up, cases interleaved)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin wrk and the server to separate cores")
    parser.add_argument("--no-setup", action="store_true", help="do not run setup_peers.sh for missing/stale venvs")
    parser.add_argument("--kaizen-python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--work", type=Path, default=RESULTS / "serving-work")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args(argv)

    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(names) - set(ALL_SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    venvs = sorted({PEER_VENV[n] for n in names if n not in LOCAL})
    if venvs and not args.no_setup:
        # Idempotent: a venv whose requirements are unchanged is left alone.
        with step(f"peer virtualenvs under {VENVS}: {', '.join(venvs)}"):
            subprocess.run(["bash", str(HERE / "setup_peers.sh"), *venvs], check=True, stdout=sys.stderr)
    for peer in names:
        if peer not in LOCAL and not venv_python(PEER_VENV[peer]).exists():
            parser.error(f"no venv for {peer} at {VENVS / peer}: run bench/serving/setup_peers.sh first")
    cores = len(os.sched_getaffinity(0))
    pin = not args.no_pin and cores >= 2 and shutil.which("taskset") is not None
    args.wrk_cpu = "0" if pin else None
    args.server_cpu = "1" if pin else None

    work: Path = args.work
    with step(f"training the model (work dir {work})"):
        workload = train(work, args.model)
    results: list[dict[str, Any]] = []
    preps: list[Prepared] = []
    try:
        for name in names:
            with step(f"{name}: preparing, cold start x{args.cold_starts}, correctness"):
                try:
                    server = MAKERS[name](workload, work, args)
                    prep = start_server(server, workload, work, args)
                except Exception as exc:  # one broken peer must not sink the others
                    results.append({"server": name, "error": f"{exc}"})
                    print(f"  {name} failed: {exc}", file=sys.stderr)
                    continue
                preps.append(prep)
                print(
                    f"  {name}: cold starts {prep.result['cold_start_all_s']} s, correct: {prep.result['correct']}",
                    file=sys.stderr,
                )
                if not args.interleave:
                    with step(f"{name}: load"):
                        load_all([prep], args)
                    results.append(finish_server(prep))
                    preps.remove(prep)
        if preps:
            with step(
                f"load, interleaved: {args.repeat} round(s) x {len(CASES)} cases x "
                f"{len(preps)} servers, {args.duration:g} s each"
            ):
                load_all(preps, args)
    finally:
        for prep in preps:
            r = finish_server(prep)
            print(
                f"  {prep.server.name}: RSS {r['rss_mb']:.0f} MB (PSS {r['pss_mb']:.0f}), {r['processes']} process(es)",
                file=sys.stderr,
            )
            results.append(r)
    order = {name: i for i, name in enumerate(names)}
    results.sort(key=lambda r: order[r["server"]])

    checks = targets(results, tree_factor=5.0 if args.model == "trees" else None)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "method": {
            "model": ("GradientBoostingClassifier(random_state=0) (100 trees, depth 3)" if args.model == "trees"
                      else "make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))")
            + " on load_breast_cancer (30 features), bodies = first 1 / 32 rows of the test split",
            "wrk": f"-t1 -c1 / -t2 -c16, {args.duration:g} s per case, --latency, {args.warmup:g} s warm-up per body",
            "pinning": "wrk on core 0, server tree on core 1 (taskset)" if pin else "none",
            "nice": args.nice,
            "repeat": f"{args.repeat} wrk run(s) per case, median by req/s",
            "order": "all servers up at once (idle ones on the same core), rounds x cases x servers interleaved"
            if args.interleave
            else "one server at a time",
            "cpu": "utime+stime of the server process tree (/proc) over the case / completed requests",
            "cold_start": f"median of {args.cold_starts}: process start to first correct answer, polled every 10 ms",
            "memory": "sum of RSS (and PSS) over the server process tree after the load",
            "env": COMMON_ENV,
        },
        "results": results,
        "targets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(
        f"Serving benchmark, {report['created']}, {os.cpu_count()} CPUs; "
        f"{report['method']['pinning']}; "
        f"wrk {report['method']['wrk']}; nice {args.nice}; {report['method']['repeat']}. "
        "'other load' = cores busy with other processes during the case.\n"
    )
    print(markdown(results))
    ok_servers = [r for r in results if "cases" in r]
    if ok_servers:
        print(
            "\nVersions: "
            + "; ".join(
                f"{r['server']}: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()) for r in ok_servers
            )
        )
        print(
            "Correct (same predictions as sklearn locally): "
            + ", ".join(f"{r['server']} {'yes' if r['correct'] else 'NO'}" for r in ok_servers)
        )
    if checks:
        print("\n| server | Kaizen target | value | met |\n|---|---|---|---|")
        for c in checks:
            print(f"| {c['server']} | {c['target']} | {c['value']} | {'yes' if c['ok'] else 'NO'} |")
    print(f"\nJSON: {args.out}")
    return 0 if all("cases" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
