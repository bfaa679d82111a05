"""End to end, no human step: the local stack serves v1; shifted traffic makes Prometheus fire the drift
alert; Alertmanager calls `kaizen retrain-webhook` (bearer token, a Pulumi secret); the pipeline
retrains on the new data, the gate passes against the served champion, the image is built, pushed
and deployed with `pulumi up` (Automation API) while a client hammers the endpoint with 0 failed
requests; `kaizen audit verify` checks every step, signed. Then the new model's baseline traffic
triggers nothing, and a candidate that fails the gate changes nothing. Real Pulumi engine, Docker,
registry, Prometheus and Alertmanager, on 127.0.0.1.

Run under `flock -x /tmp/kaizen-e2e.lock`. Wall-clock figures are printed (-s), not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from infra.local import scope_name
from infra.local.docker_ops import leftovers, purge
from tests.support import ROOT, free_ports, unavailable
from tests.support.pulumi_cli import LocalStack, have_docker

pytestmark = [pytest.mark.pulumi, pytest.mark.docker, pytest.mark.timeout(1200)]

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHIFT = np.array([0.0, 0.0, 2.5, 1.0])  # a new measuring device: petals read longer and wider
TOKEN = "e2e-webhook-token-" + os.urandom(8).hex()
TIMINGS: dict[str, float] = {}


def shifted_iris(rows: int, seed: int) -> pd.DataFrame:
    """Iris as the new device measures it (shifted petals, a little noise), `rows` times over."""
    from sklearn.datasets import load_iris

    data: Any = load_iris()
    rng = np.random.default_rng(seed)
    x = np.vstack([data.data] * rows) + SHIFT
    x = np.clip(x + rng.normal(scale=0.05, size=x.shape), 0.0, 100.0).round(3)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["species"] = np.tile(data.target_names[data.target], rows)
    return frame


def traffic_rows(seed: int) -> np.ndarray:
    """Requests from the new device, in random order (iris itself is sorted by species)."""
    return shifted_iris(2, seed=seed).sample(frac=1.0, random_state=seed)[FEATURES].to_numpy()


@dataclass
class Loop:
    stack: LocalStack
    scope: str
    tmp: Path
    config_file: Path
    ports: dict[str, int]
    env: dict[str, str]
    store: Path
    webhook: subprocess.Popen[str] | None = None
    started: dict[str, float] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['endpointPort']}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.ports['prometheusPort']}"

    def kaizen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from model_packages.cli import main; main()", *args],
                              env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=300)

    def records(self) -> list[dict[str, Any]]:
        proc = self.kaizen("audit", "log", "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def webhook_runs(self) -> dict[str, Any]:
        state = self.tmp / "webhook-state.json"
        return json.loads(state.read_text())["runs"] if state.exists() else {}


def served_version(base: str) -> str | None:
    try:
        text = requests.get(f"{base}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith("kaizen_model_info{"):
            for part in line.split("{", 1)[1].split("}", 1)[0].split(","):
                key, _, value = part.partition("=")
                if key.strip() == "version":
                    return value.strip().strip('"')
    return None


def drift_alert_state(prometheus: str) -> str:
    alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    states = {a["state"] for a in alerts if a["labels"].get("alertname") == "KaizenDrift"}
    return "firing" if "firing" in states else ("pending" if "pending" in states else "inactive")


class Hammer:
    """Clients posting rows to the endpoint as fast as answers come (two threads), counting failures."""

    def __init__(self, url: str, rows: np.ndarray) -> None:
        self.url, self.rows = url, rows
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(2)]

    def _run(self, worker: int) -> None:
        session = requests.Session()
        i = worker
        deadline = time.monotonic() + 900
        while not self.stop.is_set() and time.monotonic() < deadline:
            batch = self.rows[(i * 5) % len(self.rows):][:5].tolist()
            i += 2
            try:
                r = session.post(f"{self.url}/predict", json={"instances": batch}, timeout=30)
                with self.lock:
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(repr(exc))
            time.sleep(0.02)

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    if not have_docker():
        unavailable("no Docker engine (scripts/start-docker.sh)")
    for tool in ("docker-registry", "prometheus", "prometheus-alertmanager", "amtool"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not installed (scripts/setup.sh)")
    tmp = tmp_path_factory.mktemp("retrain-loop")
    name = f"e2e-loop-{os.getpid()}"
    stack = LocalStack(name=name, backend_dir=tmp / "state", log_file=tmp / "pulumi.log")
    keys = ("registryPort", "endpointPort", "prometheusPort", "alertmanager", "webhook", "backendA", "backendB")
    ports: dict[str, int] = dict(zip(keys, free_ports(len(keys)), strict=True))
    store = tmp / "packages"
    v1 = store / "iris-classifier" / "1.0.0"
    shutil.copytree(ROOT / "examples" / "iris-classifier", v1)
    config = {
        "kaizen:target": "local",
        "kaizen:stackKind": "dev",
        "kaizen:owner": "ml-platform",
        "kaizen:costCenter": "ml-0001",
        "kaizen:local": {
            "package": str(v1),
            "registryPort": ports["registryPort"],
            "endpointPort": ports["endpointPort"],
            "backendPorts": [ports["backendA"], ports["backendB"]],
            "prometheusPort": ports["prometheusPort"],
            "scrapeInterval": "1s",
            "restartPolicy": "on-failure",
            "drift": {"windowRows": 200, "minRows": 50},
            "alerts": {"for": "1s"},
            "alerting": {"port": ports["alertmanager"], "webhookUrl": f"http://127.0.0.1:{ports['webhook']}/alerts",
                         "groupWait": "1s", "groupInterval": "1s"},
        },
    }
    config_file = ROOT / "stacks" / f"Pulumi.{name}.yaml"  # git-ignored (stacks/Pulumi.e2e-*.yaml)
    config_file.write_text(yaml.safe_dump({"config": config}))
    env = {**stack.env, "PYTHONPATH": str(ROOT), "KAIZEN_AUDIT_TRAIL": str(tmp / "audit.jsonl"),
           "KAIZEN_AUDIT_KEY": str(tmp / "audit-key.pem"), "KAIZEN_WEBHOOK_TOKEN": TOKEN,
           "KAIZEN_IMAGES_FILE": str(tmp / "kaizen-images.json")}
    env.pop("KAIZEN_AUDIT_PUBKEYS", None)
    ctx = Loop(stack=stack, scope=scope_name("kaizen", name), tmp=tmp, config_file=config_file, ports=ports,
               env=env, store=store)
    try:
        stack.init()
        stack.run("config", "set", "--secret", "--path", "kaizen:local.alerting.webhookToken", TOKEN)
        yield ctx
    finally:
        if ctx.webhook is not None and ctx.webhook.poll() is None:
            ctx.webhook.send_signal(signal.SIGINT)
            try:
                ctx.webhook.wait(60)
            except subprocess.TimeoutExpired:
                ctx.webhook.kill()
        stack.kill_all()
        stack.recover()
        stack.run("destroy", "--yes", "--skip-preview", check=False)
        if any(leftovers(ctx.scope).values()):
            purge(ctx.scope)
        stack.run("stack", "rm", "--yes", "--force", check=False)
        config_file.unlink(missing_ok=True)
        if TIMINGS:
            print("\nretrain loop timings (s):", json.dumps(TIMINGS))


def test_v1_serves_with_alertmanager_and_the_token_stays_secret(loop: Loop) -> None:
    seconds, _ = loop.stack.up()
    TIMINGS["first_up"] = round(seconds, 1)
    out = loop.stack.outputs()
    assert out["modelVersion"] == "1.0.0" and served_version(loop.endpoint) == "1.0.0"
    assert out["alertmanagerUrl"] == f"http://127.0.0.1:{loop.ports['alertmanager']}"
    ready = requests.get(f"{out['alertmanagerUrl']}/-/ready", timeout=5)
    assert ready.status_code == 200
    status = requests.get(f"{out['alertmanagerUrl']}/api/v2/status", timeout=5).json()
    assert f"http://127.0.0.1:{loop.ports['webhook']}/alerts" in status["config"]["original"]
    wanted = [f"http://127.0.0.1:{loop.ports['alertmanager']}/api/v2/alerts"]
    deadline = time.monotonic() + 60
    while True:  # Prometheus's discovery of its Alertmanager runs on its own clock
        found = requests.get(f"{loop.prometheus}/api/v1/alertmanagers", timeout=5).json()["data"]
        if [a["url"] for a in found["activeAlertmanagers"]] == wanted:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
    # The token is encrypted in the stack's config file and in its state, and nowhere in clear.
    assert TOKEN not in loop.config_file.read_text() and "secure:" in loop.config_file.read_text()
    state = loop.stack.run("stack", "export").stdout
    assert TOKEN not in state
    resources = json.loads(state)["deployment"]["resources"]
    am = next(r for r in resources if r["urn"].endswith("::alerting-alertmanager"))
    assert "ciphertext" in json.dumps(am["inputs"]["files"]) and "ciphertext" in json.dumps(am["outputs"]["files"])
    state_files = [p for p in (loop.tmp / "state").rglob("*") if p.is_file() and ".pulumi-home" not in p.parts]
    assert state_files and not any(TOKEN.encode() in p.read_bytes() for p in state_files)


def test_drift_fires_alertmanager_retrains_and_v2_is_deployed_without_a_failed_request(loop: Loop) -> None:
    data = loop.tmp / "new-data.csv"
    shifted_iris(4, seed=1).to_csv(data, index=False)
    (loop.tmp / "loop.yaml").write_text(yaml.safe_dump({
        "pipeline": str(ROOT / "examples" / "iris_pipeline.py"), "data": [str(data)], "store": str(loop.store),
        "stack": loop.stack.name, "projectDir": str(ROOT), "cache": str(loop.tmp / "cache"),
    }))
    log = (loop.tmp / "webhook.log").open("w")
    loop.webhook = subprocess.Popen(
        [sys.executable, "-c", "from model_packages.cli import main; main()", "retrain-webhook",
         "--config", str(loop.tmp / "loop.yaml"), "--port", str(loop.ports["webhook"]),
         "--state", str(loop.tmp / "webhook-state.json")],
        env=loop.env, cwd=loop.tmp, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{loop.ports['webhook']}/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert loop.webhook.poll() is None, (loop.tmp / "webhook.log").read_text()
        assert time.monotonic() < deadline, "the webhook did not start"
        time.sleep(0.2)

    traffic = traffic_rows(seed=2)
    t0 = time.monotonic()
    fired = v2 = None
    with Hammer(loop.endpoint, traffic) as hammer:
        deadline = t0 + 600
        while time.monotonic() < deadline:
            if fired is None and drift_alert_state(loop.prometheus) == "firing":
                fired = time.monotonic() - t0
            if served_version(loop.endpoint) == "1.0.1":
                v2 = time.monotonic() - t0
                break
            runs = loop.webhook_runs()
            failed = [r for r in runs.values() if r["status"] == "failed"]
            assert not failed, failed
            assert loop.webhook.poll() is None, (loop.tmp / "webhook.log").read_text()[-4000:]
            time.sleep(0.25)
        time.sleep(2)  # a little more load on v2 after the swap
    assert fired is not None, "the drift alert never fired in Prometheus"
    assert v2 is not None, (loop.tmp / "webhook.log").read_text()[-4000:]
    TIMINGS["alert_fired_after"] = round(fired, 1)
    TIMINGS["v2_serving_after"] = round(v2, 1)
    assert hammer.failures == [], hammer.failures[:5]
    assert hammer.ok > 100

    deadline = time.monotonic() + 120
    while not any(r["status"] == "done" for r in loop.webhook_runs().values()):
        assert time.monotonic() < deadline, loop.webhook_runs()
        time.sleep(0.5)
    runs = loop.webhook_runs()
    assert len(runs) == 1, runs  # one alert instance, one run (Alertmanager's repeats are duplicates)
    run = next(iter(runs.values()))
    assert run["alert"] == "KaizenDrift" and run["outcome"]["promoted"] is True
    assert run["outcome"]["champion"] == "1.0.0" and run["outcome"]["version"] == "1.0.1"
    out = loop.stack.outputs()
    assert out["modelVersion"] == "1.0.1" and out["image"] == run["outcome"]["image"]
    assert (loop.store / "iris-classifier" / "1.0.1" / "kaizen.yaml").is_file()
    gate = (loop.store / "gate-report.md").read_text()
    assert gate.startswith("# Promotion gate: PROMOTE"), gate

    verify = loop.kaizen("audit", "verify")  # chain, signatures, provenance, the registry serves the digest
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "1 image provenance" in verify.stderr, verify.stderr
    records = loop.records()
    events = [r["event"] for r in records]
    assert events == ["drift_alert", "retrain_run", "gate", "package", "image_push", "deploy"], events
    alert, retrain_run, gate_record, package, push, deploy = records
    assert alert["alert"] == "KaizenDrift" and alert["labels"]["model"] == "iris-classifier"
    key = f"{alert['fingerprint']}@{alert['starts_at']}"
    assert retrain_run["alert"] == key and deploy["alert"] == key
    assert retrain_run["champion"] == "iris-classifier 1.0.0" and gate_record["promote"] is True
    assert gate_record["interval"][0] > 0
    assert package["version"] == "1.0.1" and push["image"] == deploy["image"] == out["image"]
    assert deploy["stack"] == loop.stack.name and deploy["served_version"] == "1.0.1"
    lines = (loop.tmp / "audit.jsonl").read_text().splitlines()
    assert len(lines) == len(records) and all(json.loads(line)["signatures"][0]["sig"] for line in lines)
    TIMINGS["deploy_records"] = len(records)


def test_baseline_traffic_of_the_new_model_triggers_nothing(loop: Loop) -> None:
    traffic = traffic_rows(seed=3)  # drawn like the data v2 was trained on
    with Hammer(loop.endpoint, traffic) as hammer:
        deadline = time.monotonic() + 60  # v1's alert resolves once v2 has its rows
        while drift_alert_state(loop.prometheus) != "inactive":
            assert time.monotonic() < deadline, "the drift alert stays active on v2's own baseline traffic"
            time.sleep(0.5)
        before = loop.records()
        deadline = time.monotonic() + 25  # > 5x (scrape + for + group wait): an alert would have fired
        while time.monotonic() < deadline:
            assert drift_alert_state(loop.prometheus) == "inactive"
            time.sleep(0.5)
    assert hammer.failures == [] and hammer.ok > 50
    rules = requests.get(f"{loop.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    drift = [r for g in rules for r in g["rules"] if r["name"] == "KaizenDrift"]
    assert drift and drift[0]["health"] == "ok", drift  # the rule is evaluated, and quiet
    assert len(loop.webhook_runs()) == 1
    assert loop.records() == before
    assert served_version(loop.endpoint) == "1.0.1"


def test_a_candidate_that_fails_the_gate_changes_nothing(loop: Loop) -> None:
    """A drift alert whose retrain cannot beat v2 (the same data v2 was trained on): a gate record
    and a report, no package, no image, no deploy; the stack has nothing to change."""
    out = loop.stack.outputs()
    before = loop.records()
    alert = {"status": "firing", "fingerprint": "0badcafe", "startsAt": "2026-12-03T00:00:00Z",
             "labels": {"alertname": "KaizenDrift", "model": "iris-classifier"}, "annotations": {}}
    answer = requests.post(f"http://127.0.0.1:{loop.ports['webhook']}/alerts", timeout=10,
                           json={"version": "4", "status": "firing", "alerts": [alert]},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.text
    key = "0badcafe@2026-12-03T00:00:00Z"
    deadline = time.monotonic() + 300
    while loop.webhook_runs().get(key, {}).get("status") not in ("done", "failed"):
        assert time.monotonic() < deadline, loop.webhook_runs()
        time.sleep(0.5)
    run = loop.webhook_runs()[key]
    assert run["status"] == "done" and run["outcome"]["promoted"] is False, run
    assert run["outcome"]["champion"] == "1.0.1"
    assert (loop.store / "gate-report.md").read_text().startswith("# Promotion gate: REJECT")
    assert not (loop.store / "iris-classifier" / "1.0.2").exists()
    new = loop.records()[len(before):]
    assert [r["event"] for r in new] == ["drift_alert", "retrain_run", "gate"]
    assert new[-1]["promote"] is False and new[-1]["champion"] == "iris-classifier 1.0.1"
    assert loop.stack.outputs() == out and served_version(loop.endpoint) == "1.0.1"
    loop.stack.preview("--expect-no-changes")
    verify = loop.kaizen("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
