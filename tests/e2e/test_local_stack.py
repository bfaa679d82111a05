"""End-to-end: real Pulumi engine, real Docker, the `local` target of the real stack program.

One stack for the module, in stages (file order): bad config -> fresh up -> drift alert -> no-op up ->
preview of a new version -> rollout under load -> interrupted up -> destroy + stack rm. Each stage
after the fresh up starts from the stack the earlier ones left; run alone (`-k`, `--lf`) it first
brings the stack up itself (`Ctx.deployed_or_up`), so every selection works and a full run does no
extra `up`. Ports come from KAIZEN_E2E_PORT_BASE (default 15100).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local import scope_name
from infra.local.docker_ops import leftovers, purge
from tests.support import ROOT, port_is_free, unavailable
from tests.support.pulumi_cli import LocalStack, have_docker, write_config

pytestmark = [pytest.mark.pulumi, pytest.mark.docker, pytest.mark.timeout(900)]

EXAMPLE = ROOT / "examples" / "iris-classifier"
ROW = [[5.1, 3.5, 1.4, 0.2]]
DRIFT = {"falseAlarmDays": 30, "windowSeconds": 5, "windowRows": 400, "minRows": 100}
DRIFT_REQUEST_ROWS = 8  # 2% of a 400-row window: the most one request counts
TIMINGS: dict[str, float] = {}


@dataclass
class Ctx:
    stack: LocalStack
    scope: str
    ports: dict[str, int]
    config: dict[str, Any]
    tmp: Path
    packages: dict[str, Path] = field(default_factory=dict)
    deployed: str | None = None  # the version the stack was last brought up with; None: nothing up yet

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['endpointPort']}"

    def set_package(self, version: str) -> None:
        cfg = json.loads(json.dumps(self.config))
        cfg["kaizen:local"]["package"] = str(self.packages[version])
        write_config(self.stack.config_file or self.tmp / "cfg.yaml", cfg)

    def deployed_or_up(self, version: str = "1.0.0") -> str:
        """The stage's starting point: the stack as the earlier stages left it or, when this module
        has not brought it up (the stage runs alone), a plain `up` of `version`."""
        if self.deployed is None:
            self.set_package(version)
            self.stack.up()
            self.deployed = version
        return self.deployed

    def require_empty(self, stage: str) -> None:
        assert self.deployed is None, (
            f"{stage} runs on the empty stack, before any stage brings it up: keep it first in the module")


def _package(tmp: Path, version: str) -> Path:
    """A copy of the iris example with another version (a new image, same artifact)."""
    out = tmp / f"iris-{version}"
    shutil.copytree(EXAMPLE, out)
    manifest = out / "kaizen.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("version: 1.0.0", f"version: {version}", 1))
    return out


def _predict(base: str) -> requests.Response:
    return requests.post(f"{base}/predict", json={"instances": ROW}, timeout=10)


def _served_version(base: str) -> str | None:
    text = requests.get(f"{base}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("kaizen_model_info{"):
            labels = line.split("{", 1)[1].split("}", 1)[0]
            for part in labels.split(","):
                key, _, value = part.partition("=")
                if key.strip() == "version":
                    return value.strip().strip('"')
    return None


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    if not have_docker():
        unavailable("no Docker engine (scripts/start-docker.sh)")
    if shutil.which("docker-registry") is None or shutil.which("prometheus") is None:
        unavailable("apt-get install -y docker-registry prometheus")
    base = int(os.environ.get("KAIZEN_E2E_PORT_BASE", "15100"))
    ports = {
        "registryPort": base + 1,
        "endpointPort": base + 80,
        "prometheusPort": base + 90,
    }
    backends = [base + 81, base + 82]
    for port in [*ports.values(), *backends]:
        if not port_is_free(port):
            unavailable(f"port {port} is taken (set KAIZEN_E2E_PORT_BASE)")
    tmp = tmp_path_factory.mktemp("local-stack")
    name = f"e2e-{os.getpid()}"
    stack = LocalStack(
        name=name,
        backend_dir=tmp / "state",
        config_file=tmp / "Pulumi.e2e.yaml",
        log_file=Path(os.environ.get("KAIZEN_E2E_LOG", tmp / "pulumi.log")),
    )
    config = {
        "kaizen:target": "local",
        "kaizen:stackKind": "dev",
        "kaizen:owner": "ml-platform",
        "kaizen:costCenter": "ml-0001",
        "kaizen:local": {
            **ports,
            "backendPorts": backends,
            "scrapeInterval": "1s",
            "package": "",
            # Small drift windows so the module sees several close: 400 rows or 5 s, judged from 100 rows.
            "drift": DRIFT,
        },
    }
    c = Ctx(stack=stack, scope=scope_name("kaizen", name), ports=ports, config=config, tmp=tmp)
    c.packages = {v: _package(tmp, v) for v in ("1.0.0", "1.1.0", "1.2.0")}
    c.set_package("1.0.0")
    stack.init()
    try:
        yield c
    finally:
        stack.kill_all()
        if any(leftovers(c.scope).values()):
            stack.recover()
            stack.run("destroy", "--yes", "--skip-preview", check=False)
            purge(c.scope)
            import docker

            client = docker.from_env()
            repo = f"127.0.0.1:{ports['registryPort']}/kaizen/iris-classifier"
            for image in client.images.list(name=repo):
                for tag in image.tags:
                    client.images.remove(tag, force=True)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        if TIMINGS:
            print("\nlocal stack timings (s):", json.dumps(TIMINGS))


def test_bad_config_fails_before_any_resource(ctx: Ctx) -> None:
    ctx.require_empty("the bad-config stage")
    bad = json.loads(json.dumps(ctx.config))
    bad["kaizen:local"]["package"] = str(ctx.packages["1.0.0"])
    bad["kaizen:local"]["endpointPort"] = "eighty"
    bad_file = ctx.tmp / "Pulumi.bad.yaml"
    write_config(bad_file, bad)
    bad_stack = LocalStack(
        name=ctx.stack.name,
        backend_dir=ctx.stack.backend_dir,
        config_file=bad_file,
        env=ctx.stack.env,
    )
    proc = bad_stack.run("up", "--yes", "--skip-preview", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "kaizen:local.endpointPort" in out, out[-3000:]
    assert not any(leftovers(ctx.scope).values())
    assert [r for r in ctx.stack.resources() if r["type"] != "pulumi:pulumi:Stack"] == []


def test_fresh_up_serves_and_is_scraped(ctx: Ctx) -> None:
    ctx.require_empty("the fresh-up stage")
    ctx.set_package("1.0.0")
    ctx.deployed = "1.0.0"  # from here on something may be up, even if the up fails half-way
    seconds, _ = ctx.stack.up()
    TIMINGS["first_up"] = round(seconds, 1)
    out = ctx.stack.outputs()
    assert out["endpointUrl"] == ctx.endpoint
    assert out["modelName"] == "iris-classifier"
    assert out["modelVersion"] == "1.0.0"
    assert out["image"].startswith(f"127.0.0.1:{ctx.ports['registryPort']}/")
    assert "@sha256:" in out["image"] and out["imageDigest"].startswith("sha256:")
    answer = _predict(ctx.endpoint)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["setosa"]
    # Prometheus scrapes the endpoint.
    prom = out["metricsUrl"]
    deadline = time.monotonic() + 60
    value = None
    while time.monotonic() < deadline:
        r = requests.get(
            f"{prom}/api/v1/query",
            params={"query": 'kaizen_requests_total{route="predict"}'},
            timeout=5,
        )
        result = r.json()["data"]["result"]
        if result:
            value = float(result[0]["value"][1])
            break
        time.sleep(1)
    assert value is not None and value >= 1
    rules = requests.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    names = {rule["name"] for g in rules for rule in g["rules"]}
    assert {"KaizenHighP99Latency", "KaizenHighErrorRate", "KaizenDrift"} <= names
    # The container runs by digest with a restart policy and host networking.
    import docker

    client = docker.from_env()
    models = client.containers.list(filters={"label": [f"kaizen.scope={ctx.scope}", "kaizen.role=model"]})
    assert len(models) == 1
    attrs = models[0].attrs
    assert attrs["Config"]["Image"] == out["image"]
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_alert_rules_pass_promtool(ctx: Ctx, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool not installed")
    from infra.common.local_config import LocalAlerts
    from infra.local.monitoring import alert_rules

    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules(LocalAlerts(), model="iris-classifier"))
    proc = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _prom(ctx: Ctx, query: str) -> list[dict[str, Any]]:
    prom = f"http://127.0.0.1:{ctx.ports['prometheusPort']}"
    return requests.get(f"{prom}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]


def _drift_firing(ctx: Ctx) -> bool:
    return bool(_prom(ctx, 'ALERTS{alertname="KaizenDrift",alertstate="firing"}'))


def _windows(ctx: Ctx) -> float:
    result = _prom(ctx, "max(kaizen_drift_windows_total)")
    return float(result[0]["value"][1]) if result else 0.0


def _send(ctx: Ctx, rows: list[list[float]]) -> None:
    for start in range(0, len(rows), DRIFT_REQUEST_ROWS):
        answer = requests.post(f"{ctx.endpoint}/predict", json={"instances": rows[start:start + DRIFT_REQUEST_ROWS]},
                               timeout=10)
        assert answer.status_code == 200, answer.text


def test_prometheus_fires_kaizen_drift_on_shifted_traffic_only(ctx: Ctx) -> None:
    """Baseline traffic closes windows without an alarm; shifted traffic fires KaizenDrift within
    the documented delay (a 400-row window closes within a 1 s drift tick, then one 1 s scrape and
    one 1 s rule evaluation: a few seconds after the 400th shifted row)."""
    import numpy as np
    from sklearn.datasets import load_iris

    ctx.deployed_or_up()
    data = np.asarray(load_iris(return_X_y=True)[0])
    rng = np.random.default_rng(11)
    for _ in range(2):  # two windows of training-like rows (a window closes on the drift timer's tick)
        before = _windows(ctx)
        _send(ctx, data[rng.integers(0, len(data), size=400)].tolist())
        deadline = time.monotonic() + 60
        while _windows(ctx) < before + 1:
            assert time.monotonic() < deadline, "no drift window closed: " + "; ".join(
                x for x in requests.get(f"{ctx.endpoint}/metrics", timeout=5).text.splitlines()
                if x.startswith(("kaizen_drift_window", "kaizen_drift_alarm", "kaizen_predicted")))
            time.sleep(0.5)
    time.sleep(3)  # a scrape and a rule evaluation after the verdicts
    assert _prom(ctx, "max(kaizen_drift_alarm)")[0]["value"][1] == "0"
    assert not _drift_firing(ctx)
    shifted = data[rng.integers(0, len(data), size=400)]
    shifted[:, 2] += 2.0  # petal length 2 cm longer than in training
    started = time.monotonic()
    _send(ctx, shifted.tolist())
    sent = time.monotonic()
    deadline = sent + 30
    while not _drift_firing(ctx):
        assert time.monotonic() < deadline, "KaizenDrift did not fire on shifted traffic"
        time.sleep(0.25)
    TIMINGS["drift_alert_after_last_shifted_row"] = round(time.monotonic() - sent, 1)
    TIMINGS["drift_alert_after_first_shifted_row"] = round(time.monotonic() - started, 1)


def test_second_up_is_a_noop(ctx: Ctx) -> None:
    ctx.set_package(ctx.deployed_or_up())
    seconds, proc = ctx.stack.up("--expect-no-changes")
    TIMINGS["noop_up"] = round(seconds, 1)
    assert proc.returncode == 0


def test_preview_shows_the_diff_and_changes_nothing(ctx: Ctx) -> None:
    import docker

    client = docker.from_env()
    assert ctx.deployed_or_up() == "1.0.0", f"the preview stage expects 1.0.0 served, not {ctx.deployed}"
    before = sorted(str(c.id) for c in client.containers.list(filters={"label": f"kaizen.scope={ctx.scope}"}))
    ctx.set_package("1.1.0")
    proc = ctx.stack.preview()
    assert "model-image" in proc.stdout and "update" in proc.stdout, proc.stdout[-3000:]
    assert "endpoint-model" in proc.stdout
    after = sorted(str(c.id) for c in client.containers.list(filters={"label": f"kaizen.scope={ctx.scope}"}))
    assert before == after
    assert _served_version(ctx.endpoint) == "1.0.0"


def test_rollout_swaps_without_a_failed_request(ctx: Ctx) -> None:
    assert ctx.deployed_or_up() != "1.1.0", "the rollout stage needs another version up first"
    ctx.set_package("1.1.0")
    stop = threading.Event()
    failures: list[str] = []
    ok = [0]

    def load() -> None:  # a small steady load: ~20 requests/s per worker, bounded by `stop`
        session = requests.Session()
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = session.post(f"{ctx.endpoint}/predict", json={"instances": ROW}, timeout=10)
                if r.status_code == 200:
                    ok[0] += 1
                else:
                    failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.05)

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        ctx.deployed = "1.1.0"
        seconds, _ = ctx.stack.up()
    finally:
        stop.set()
        for w in workers:
            w.join()
    TIMINGS["rollout_up"] = round(seconds, 1)
    assert failures == [], failures[:5]
    assert ok[0] > 20
    assert _served_version(ctx.endpoint) == "1.1.0"
    assert ctx.stack.outputs()["modelVersion"] == "1.1.0"
    import docker

    models = docker.from_env().containers.list(
        all=True, filters={"label": [f"kaizen.scope={ctx.scope}", "kaizen.role=model"]}
    )
    assert len(models) == 1


def test_interrupted_up_then_up_converges(ctx: Ctx) -> None:
    import docker

    client = docker.from_env()
    assert ctx.deployed_or_up("1.1.0") != "1.2.0", "the interrupted-up stage needs another version up first"
    ctx.set_package("1.2.0")
    ctx.deployed = "1.2.0"
    proc = ctx.stack.popen("up", "--yes", "--skip-preview")
    # Kill the whole `pulumi up` (CLI, language host, providers) once the new image is pushed and
    # the new model container is starting: the state then has a pending operation.
    deadline = time.monotonic() + 300
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        # sparse: the daemon's list only; a full list inspects each container and races its removal
        models = client.containers.list(all=True, sparse=True,
                                        filters={"label": [f"kaizen.scope={ctx.scope}", "kaizen.role=model"]})
        if len(models) >= 2:
            killed = bool(ctx.stack.kill_all())
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed, "the up finished before it could be interrupted"
    ctx.stack.recover()
    seconds, _ = ctx.stack.up("--refresh")
    TIMINGS["up_after_interrupt"] = round(seconds, 1)
    assert _predict(ctx.endpoint).status_code == 200
    assert _served_version(ctx.endpoint) == "1.2.0"
    models = client.containers.list(all=True, filters={"label": [f"kaizen.scope={ctx.scope}", "kaizen.role=model"]})
    assert len(models) == 1, [m.name for m in models]
    ctx.stack.up("--expect-no-changes")


def test_destroy_leaves_nothing_and_stack_rm_works(ctx: Ctx) -> None:
    ctx.deployed_or_up()
    seconds, _ = ctx.stack.destroy()
    TIMINGS["destroy"] = round(seconds, 1)
    assert leftovers(ctx.scope) == {"containers": [], "volumes": [], "images": []}
    import docker

    pushed = docker.from_env().images.list(name=f"127.0.0.1:{ctx.ports['registryPort']}/kaizen/iris-classifier")
    assert pushed == []
    for key in ("endpointPort", "registryPort", "prometheusPort"):
        assert port_is_free(ctx.ports[key]), f"{key} still bound after destroy"
    assert ctx.stack.processes() == []
    ctx.stack.remove()
    names = json.loads(ctx.stack.run("stack", "ls", "--json", stack=False).stdout or "[]")
    assert ctx.stack.name not in {s["name"] for s in names}


def test_preview_stack_script_destroys_idempotently(tmp_path: Path) -> None:
    """`scripts/preview-stack.sh destroy N` (a wrapper of `kaizen ci preview destroy`, whose life cycle
    tests/ci/test_ci_local.py drives) succeeds for a stack that does not exist."""
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "e2e",
        "PULUMI_HOME": str(tmp_path / "home"),
    }
    script = str(ROOT / "scripts" / "preview-stack.sh")
    for _ in range(2):
        down = subprocess.run(["bash", script, "destroy", "399"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, (down.stdout + down.stderr)[-3000:]
        assert "nothing to do" in down.stderr
    bad = subprocess.run(["bash", script, "up", "x"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be a number" in bad.stderr
