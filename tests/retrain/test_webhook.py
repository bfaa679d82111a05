"""`kaizen retrain-webhook` over real HTTP on 127.0.0.1: 401/400/202/200, one run per alert instance,
handled alerts kept across a restart; the loop's config errors and its pull-request branch."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from model_packages.audit import trail
from model_packages.retrain.loop import LoopError, leave_branch, load_config
from model_packages.retrain.webhook import Alert, RetrainWebhook, parse_payload
from tests.support import ROOT, free_port

TOKEN = "webhook-token-0123456789"


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    return tmp_path / "audit.jsonl"


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "kaizen-webhook", "groupKey": "{}:{}",
            "alerts": list(alerts)}


def alert(fingerprint: str = "a1b2", starts: str = "2026-12-03T13:00:00Z", status: str = "firing",
          name: str = "KaizenDrift") -> dict[str, Any]:
    return {"status": status, "fingerprint": fingerprint, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "labels": {"alertname": name, "model": "iris-classifier", "severity": "page"},
            "annotations": {"summary": "input drift"}}


class Runs:
    """The loop's stand-in for the webhook's own tests: records each alert, can block to show that
    a restart does not repeat a run in flight."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, item: Alert) -> dict[str, Any]:
        self.seen.append(item.key)
        assert self.release.wait(30)
        return {"promoted": True, "alert": item.key}


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[tuple[RetrainWebhook, Runs, str]]:
    runs = Runs()
    server = RetrainWebhook(token=TOKEN, state=tmp_path / "state.json", runner=runs, port=free_port())
    server.start()
    try:
        yield server, runs, f"http://127.0.0.1:{server.port}/alerts"
    finally:
        server.stop(timeout=30)


def _post(url: str, doc: Any, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return requests.post(url, data=data, headers={**headers, "Content-Type": "application/json"}, timeout=10)


def _wait_done(server: RetrainWebhook, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = server.state.snapshot().get(key, {})
        if run.get("status") in ("done", "failed"):
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {key} did not finish: {server.state.snapshot()}")


def test_token_is_required(hook: tuple[RetrainWebhook, Runs, str]) -> None:
    server, runs, url = hook
    for token in (None, "wrong-token-0123456789", ""):
        answer = _post(url, payload(alert()), token)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(url, timeout=5).status_code == 401
    assert runs.seen == [] and server.state.snapshot() == {}


@pytest.mark.parametrize(("body", "needle"), [
    (b"{not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"version": "3", "alerts": []}).encode(), "version"),
    (json.dumps({"version": "4"}).encode(), "alerts: missing"),
    (json.dumps(payload({**alert(), "fingerprint": ""})).encode(), "alerts[0].fingerprint"),
    (json.dumps(payload(alert(), {**alert(), "status": "maybe"})).encode(), "alerts[1].status"),
    (json.dumps(payload({**alert(), "labels": {}})).encode(), "alerts[0].labels.alertname"),
])
def test_a_malformed_payload_is_400_naming_the_field(hook: tuple[RetrainWebhook, Runs, str], body: bytes,
                                                     needle: str) -> None:
    server, runs, url = hook
    answer = _post(url, body)
    assert answer.status_code == 400 and needle in answer.json()["error"], answer.text
    assert runs.seen == [] and server.state.snapshot() == {}


def test_one_run_per_alert_instance_and_duplicates_are_200(hook: tuple[RetrainWebhook, Runs, str],
                                                          audit: Path) -> None:
    server, runs, url = hook
    first = _post(url, payload(alert()))
    assert first.status_code == 202 and first.json()["started"] == ["a1b2@2026-12-03T13:00:00Z"]
    assert _wait_done(server, "a1b2@2026-12-03T13:00:00Z")["outcome"]["promoted"] is True
    repeat = _post(url, payload(alert()))  # Alertmanager's repeat of the same firing alert
    assert repeat.status_code == 200 and repeat.json()["duplicates"] == ["a1b2@2026-12-03T13:00:00Z"]
    other = _post(url, payload(alert(name="KaizenHighP99Latency", fingerprint="ffff"), alert(status="resolved")))
    assert other.status_code == 200 and other.json()["ignored"] == ["ffff@2026-12-03T13:00:00Z"]
    assert other.json()["resolved"] == 1
    again = _post(url, payload(alert(starts="2026-12-03T14:00:00Z")))  # the same alert firing anew
    assert again.status_code == 202
    _wait_done(server, "a1b2@2026-12-03T14:00:00Z")
    assert runs.seen == ["a1b2@2026-12-03T13:00:00Z", "a1b2@2026-12-03T14:00:00Z"]
    records = trail.read(audit)
    assert [(r["event"], r["starts_at"]) for r in records] == [("drift_alert", "2026-12-03T13:00:00Z"),
                                                               ("drift_alert", "2026-12-03T14:00:00Z")]
    status = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert {run["status"] for run in status["runs"].values()} == {"done"}


def test_a_restart_does_not_rerun_handled_alerts(tmp_path: Path) -> None:
    runs = Runs()
    runs.release.clear()  # the first run is still going when the webhook goes down
    state = tmp_path / "state.json"
    server = RetrainWebhook(token=TOKEN, state=state, runner=runs, port=free_port())
    server.start()
    url = f"http://127.0.0.1:{server.port}/alerts"
    assert _post(url, payload(alert())).status_code == 202
    deadline = time.monotonic() + 10
    while not runs.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    server.server.shutdown()
    server.server.server_close()
    on_disk = json.loads(state.read_text())["runs"]
    assert on_disk["a1b2@2026-12-03T13:00:00Z"]["status"] == "running"
    runs.release.set()
    server.stop(timeout=30)
    later = Runs()
    restarted = RetrainWebhook(token=TOKEN, state=state, runner=later, port=free_port())
    restarted.start()
    try:
        url = f"http://127.0.0.1:{restarted.port}/alerts"
        assert _post(url, payload(alert())).status_code == 200
        assert _post(url, payload(alert(fingerprint="c3d4"))).status_code == 202
        _wait_done(restarted, "c3d4@2026-12-03T13:00:00Z")
    finally:
        restarted.stop(timeout=30)
    assert later.seen == ["c3d4@2026-12-03T13:00:00Z"]
    assert list(state.parent.glob(".state.json.*")) == []  # atomic writes leave no temp file


def test_a_failed_run_is_recorded_and_the_webhook_keeps_serving(tmp_path: Path) -> None:
    def broken(_item: Alert) -> dict[str, Any]:
        raise LoopError("pulumi up failed")

    server = RetrainWebhook(token=TOKEN, state=tmp_path / "s.json", runner=broken, port=free_port())
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/alerts"
        assert _post(url, payload(alert())).status_code == 202
        run = _wait_done(server, "a1b2@2026-12-03T13:00:00Z")
        assert run["status"] == "failed" and "pulumi up failed" in run["error"]
        assert _post(url, payload(alert(fingerprint="e5"))).status_code == 202
    finally:
        server.stop(timeout=30)


def test_an_alert_the_audit_trail_cannot_record_is_not_run(hook: tuple[RetrainWebhook, Runs, str],
                                                           tmp_path: Path) -> None:
    server, runs, url = hook
    (tmp_path / "audit.jsonl").write_text("not a record\n")  # a corrupt trail: append refuses it
    answer = _post(url, payload(alert()))
    assert answer.status_code == 500 and "audit trail" in answer.json()["error"], answer.text
    assert server.state.snapshot() == {} and runs.seen == []
    (tmp_path / "audit.jsonl").unlink()
    assert _post(url, payload(alert())).status_code == 202  # Alertmanager's retry then goes through


def test_bad_state_and_short_tokens_are_refused(tmp_path: Path) -> None:
    from model_packages.errors import KaizenError

    with pytest.raises(KaizenError, match="at least 16"):
        RetrainWebhook(token="short", state=tmp_path / "s.json", runner=Runs(), port=free_port())
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(KaizenError, match="not a webhook state file"):
        RetrainWebhook(token=TOKEN, state=tmp_path / "bad.json", runner=Runs(), port=free_port())
    assert parse_payload(json.dumps(payload(alert(status="resolved"))).encode()) == ([], 1)


def test_loop_config_errors_name_the_key(tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    data.write_text("a,b\n1,2\n")
    good = {"pipeline": str(ROOT / "examples" / "iris_pipeline.py"), "data": [str(data)], "store": "packages",
            "stack": "local", "projectDir": str(ROOT)}
    cfg_file = tmp_path / "loop.yaml"
    cfg_file.write_text(json.dumps(good))
    cfg = load_config(cfg_file)
    assert cfg.store == tmp_path / "packages" and cfg.mode == "deploy"
    for change, needle in (({"data": []}, "data"), ({"stak": "x"}, "stak: unknown key"),
                           ({"data": [str(tmp_path / "nope.csv")]}, "nope.csv does not exist"),
                           ({"mode": "branch"}, "needs repo and packagePath"),
                           ({"projectDir": str(tmp_path)}, "holds no Pulumi.yaml"),
                           ({"stack": "a b"}, "not a stack name")):
        cfg_file.write_text(json.dumps({**good, **change}))
        with pytest.raises(LoopError, match=needle):
            load_config(cfg_file)


def test_branch_mode_leaves_a_pull_request_ready_branch_and_the_checkout_alone(tmp_path: Path, audit: Path) -> None:
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "iris-classifier", repo / "models" / "iris")
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "v1"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    candidate = tmp_path / "candidate"
    shutil.copytree(ROOT / "examples" / "iris-classifier", candidate)
    manifest = candidate / "kaizen.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", "version: 1.0.1", 1))
    report = tmp_path / "gate-report.md"
    report.write_text("# Promotion gate: PROMOTE\n")
    branch, commit = leave_branch(repo, "models/iris", candidate, report, alert="a1b2@t")
    assert branch == "kaizen/retrain-iris-classifier-1.0.1"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    assert git("rev-parse", branch).strip() == commit
    assert git("show", f"{branch}:models/iris/gate-report.md") == "# Promotion gate: PROMOTE\n"
    assert "version: 1.0.1" in git("show", f"{branch}:models/iris/kaizen.yaml")
    assert git("rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git("status", "--porcelain") == "" and "version: 1.0.0" in (repo / "models/iris/kaizen.yaml").read_text()
    assert git("worktree", "list").count("\n") == 1
    assert [(r["event"], r["branch"]) for r in trail.read(audit)] == [("branch", branch)]


def test_debians_alertmanager_calls_the_webhook_with_the_token(tmp_path: Path) -> None:
    """The real Alertmanager binary with the stack's generated config: an alert posted to its API
    reaches the webhook (Alertmanager's own payload and bearer token), once; others go nowhere."""
    import shutil

    from infra.common.local_config import AlertingSettings
    from infra.local.monitoring import alertmanager_config

    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager not installed (scripts/setup.sh)")
    runs = Runs()
    server = RetrainWebhook(token=TOKEN, state=tmp_path / "state.json", runner=runs, port=free_port())
    server.start()
    port = free_port()
    settings = AlertingSettings.model_validate({"port": port, "webhookUrl": f"http://127.0.0.1:{server.port}/alerts",
                                                "webhookToken": TOKEN, "groupWait": "100ms"})
    (tmp_path / "am.yml").write_text(alertmanager_config(settings))
    am = subprocess.Popen([binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
                           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert am.poll() is None and time.monotonic() < deadline, "alertmanager did not start"
            time.sleep(0.1)
        labels = {"model": "iris-classifier", "severity": "page"}
        posted = requests.post(f"{base}/api/v2/alerts", timeout=5, json=[
            {"labels": {"alertname": "KaizenDrift", **labels}, "annotations": {"summary": "input drift"}},
            {"labels": {"alertname": "KaizenHighP99Latency", **labels}},
        ])
        assert posted.status_code == 200, posted.text
        deadline = time.monotonic() + 30
        while not runs.seen:
            assert time.monotonic() < deadline, "Alertmanager never called the webhook"
            time.sleep(0.1)
        key = runs.seen[0]
        assert _wait_done(server, key)["alert"] == "KaizenDrift"
        time.sleep(1.5)  # the latency alert went nowhere, and the drift alert started one run
        assert len(runs.seen) == 1 and list(server.state.snapshot()) == [key]
    finally:
        am.terminate()
        am.wait(30)
        server.stop(timeout=30)


def test_the_loop_in_branch_mode_gates_the_served_champion_and_leaves_a_branch(tmp_path: Path, audit: Path) -> None:
    """run_loop with `mode: branch`: the champion is the stack's served version (outputs given), the
    candidate trained on shifted data passes the gate and lands on a branch; nothing is deployed."""
    import shutil

    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris

    from model_packages.retrain.loop import LoopConfig, run_loop

    store = tmp_path / "packages"
    shutil.copytree(ROOT / "examples" / "iris-classifier", store / "iris-classifier" / "1.0.0")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "iris-classifier", repo / "examples" / "iris-classifier")
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "v1"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    iris: Any = load_iris()
    x = np.vstack([iris.data] * 4) + np.array([0.0, 0.0, 2.5, 1.0])
    x = x + np.random.default_rng(1).normal(scale=0.05, size=x.shape)
    frame = pd.DataFrame(x.clip(0, 100), columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    frame["species"] = np.tile(iris.target_names[iris.target], 4)
    half = len(frame) // 2
    frame.iloc[:half].to_csv(tmp_path / "a.csv", index=False)  # two files, concatenated by the loop
    frame.iloc[half:].to_csv(tmp_path / "b.csv", index=False)
    cfg = LoopConfig(pipeline=ROOT / "examples" / "iris_pipeline.py", data=[tmp_path / "a.csv", tmp_path / "b.csv"],
                     store=store, stack="local", project_dir=ROOT, cache=tmp_path / "cache", mode="branch",
                     repo=repo, package_path="examples/iris-classifier")
    image = "127.0.0.1:1/kaizen/iris@sha256:" + "a" * 64
    served = {"modelName": "iris-classifier", "modelVersion": "1.0.0", "image": image}
    result = run_loop(cfg, alert="f00d@t", outputs=served)
    assert result["promoted"] is True and result["champion"] == "1.0.0" and result["version"] == "1.0.1"
    assert result["branch"] == "kaizen/retrain-iris-classifier-1.0.1" and "image" not in result
    shown = subprocess.run(["git", "-C", str(repo), "show", f"{result['branch']}:examples/iris-classifier/kaizen.yaml"],
                           check=True, capture_output=True, text=True).stdout
    assert "version: 1.0.1" in shown
    events = [r["event"] for r in trail.read(audit)]
    assert events == ["retrain_run", "gate", "package", "branch"]
    run = trail.read(audit)[0]
    assert run["alert"] == "f00d@t" and run["champion_image"] == served["image"]
    # A stack deployed outside the trail is not touched: its image is not the last recorded deploy.
    trail.append("deploy", audit, stack="local", image=served["image"])
    with pytest.raises(LoopError, match="deployed outside the trail"):
        run_loop(cfg, outputs={**served, "image": "127.0.0.1:1/kaizen/iris@sha256:" + "b" * 64})
