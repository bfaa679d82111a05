"""Fast checks of the local target's pieces (no Pulumi engine, no Docker): settings, alert rules,
provider diffs, and the endpoint proxy's zero-failure upstream switch against real loopback
servers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from infra.common.local_config import LocalAlerts, LocalSettings
from infra.local import scope_name
from infra.local.monitoring import alert_rules, prometheus_config
from infra.local.providers import ModelContainerProvider, RouterProvider, ServiceProvider
from tests.support import free_port, free_ports, unavailable


def test_settings_defaults_and_camel_case() -> None:
    s = LocalSettings.model_validate({"endpointPort": 18080, "package": "examples/x"})
    assert s.backends == (18081, 18082)
    assert s.endpoint_url == "http://127.0.0.1:18080"
    assert LocalSettings.model_validate({"endpoint_port": 18080}).endpoint_port == 18080
    alerts = {"latencyP99Ms": 300, "errors5xxPer5min": 7, "for": "1m"}
    parsed = LocalSettings.model_validate({"alerts": alerts}).alerts
    assert (parsed.latency_p99_ms, parsed.errors_5xx_per_5min, parsed.for_) == (300, 7, "1m")
    drift = LocalSettings.model_validate({"drift": {"falseAlarmDays": 7, "windowSeconds": 5, "windowRows": 400,
                                                     "minRows": 100}}).drift
    assert drift.as_env() == {"KAIZEN_DRIFT": "on", "KAIZEN_DRIFT_FALSE_ALARM_DAYS": "7",
                              "KAIZEN_DRIFT_WINDOW_SECONDS": "5", "KAIZEN_DRIFT_WINDOW_ROWS": "400",
                              "KAIZEN_DRIFT_MIN_ROWS": "100"}


def test_the_removed_drift_score_is_refused_naming_its_replacement() -> None:
    with pytest.raises(ValidationError, match=r"driftScore was removed.*drift\.falseAlarmDays"):
        LocalSettings.model_validate({"alerts": {"driftScore": 0.25}})


def test_the_repository_stack_files_are_valid() -> None:
    import yaml

    from infra.common.config import parse_config

    root = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((root / "stacks" / "Pulumi.local.yaml").read_text())["config"]
    cfg = parse_config({k.split(":", 1)[1]: v for k, v in doc.items()}, "local")
    assert cfg.target == "local" and isinstance(cfg.local, LocalSettings)
    template = (root / "stacks" / "templates" / "Pulumi.pr.local.yaml").read_text()
    ports = {
        "REGISTRY_PORT": 20011,
        "ENDPOINT_PORT": 20012,
        "BACKEND_PORT_A": 20013,
        "BACKEND_PORT_B": 20014,
        "PROMETHEUS_PORT": 20015,
    }
    for key, port in ports.items():
        template = template.replace(f"__{key}__", str(port))
    doc = yaml.safe_load(template)["config"]
    cfg = parse_config({k.split(":", 1)[1]: v for k, v in doc.items()}, "pr-1")
    assert cfg.stack_kind == "preview"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"endpointPort": "eighty"}, "endpointPort"),
        ({"endpointPort": 80}, "endpointPort"),
        ({"registryPort": 9090}, "prometheusPort"),
        ({"endpointPort": 8080, "backendPorts": [8080, 8081]}, "backendPorts[0]"),
        ({"endpiontPort": 8080}, "endpiontPort"),
        ({"alerts": {"driftScore": -1}}, "driftScore"),
        ({"drift": {"windowRows": 100, "minRows": 500}}, "minRows"),
        ({"drift": {"falseAlarmDays": 0}}, "falseAlarmDays"),
        ({"restartPolicy": "sometimes"}, "restartPolicy"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        LocalSettings.model_validate(raw)
    text = str(err.value) + json.dumps([e["loc"] for e in err.value.errors()])
    assert needle in text


def test_alert_rules_cover_latency_errors_drift() -> None:
    doc = json.loads(alert_rules(LocalAlerts(latency_p99_ms=250), model="m"))
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert "> 0.25" in rules["KaizenHighP99Latency"]["expr"]
    assert "kaizen_request_duration_seconds_bucket" in rules["KaizenHighP99Latency"]["expr"]
    assert 'status=~"5.."' in rules["KaizenHighErrorRate"]["expr"]
    assert rules["KaizenDrift"]["expr"] == "max(kaizen_drift_alarm) >= 1" and "for" not in rules["KaizenDrift"]
    config = json.loads(prometheus_config(target="127.0.0.1:1", scrape_interval="5s", model="m"))
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:1"]


def test_promtool_accepts_rules_and_config(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        unavailable("promtool not installed", ci="promtool (Debian prometheus) not installed in CI")
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules(LocalAlerts(), model="iris"))
    proc = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scope_names_are_docker_safe() -> None:
    assert scope_name("kaizen", "local") == "kaizen-local"
    assert scope_name("Other Project", "pr-42") == "kaizen-other-project-pr-42"
    assert len(scope_name("kaizen", "x" * 100)) <= 40


def test_provider_diffs() -> None:
    olds = {
        "image": "r/a@sha256:1",
        "ports": [1, 2],
        "env": {},
        "scope": "s",
        "restart_policy": "unless-stopped",
        "ready_path": "/r",
        "model": "m",
        "port": 1,
    }
    same = ModelContainerProvider().diff("id", olds, dict(olds))
    assert not same.changes
    new = ModelContainerProvider().diff("id", olds, {**olds, "image": "r/a@sha256:2"})
    assert new.changes and new.replaces == ["image"] and not new.delete_before_replace
    router = {
        "name": "n",
        "scope": "s",
        "image": "t",
        "port": 1,
        "upstream_port": 2,
        "ready_path": "/r",
        "restart_policy": "unless-stopped",
    }
    switch = RouterProvider().diff("id", router, {**router, "upstream_port": 3})
    assert switch.changes and switch.replaces == []
    moved = RouterProvider().diff("id", router, {**router, "port": 5})
    assert moved.replaces == ["port"] and moved.delete_before_replace
    svc = {"name": "p", "files": {"a": "1"}, "reload_url": "http://x/-/reload"}
    reload = ServiceProvider().diff("id", svc, {**svc, "files": {"a": "2"}})
    assert reload.changes and reload.replaces == []


# ---- the proxy ------------------------------------------------------------------------------------
def _backend(port: int, name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, json.dumps({"backend": name}).encode())

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("content-length", "0")))
            self._send(200, json.dumps({"backend": name, "echo": len(data)}).encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture()
def proxy_setup(tmp_path: Path) -> Iterator[tuple[int, int, int, Path]]:
    from infra.local import proxy

    listen, blue, green = free_ports(3)
    servers = [_backend(blue, "blue"), _backend(green, "green")]
    state = tmp_path / "upstream"
    loop = asyncio.new_event_loop()
    p = proxy.Proxy(proxy.Upstream("127.0.0.1", blue), str(state), "tok")

    async def start() -> asyncio.base_events.Server:
        return await asyncio.start_server(p.handle, "127.0.0.1", listen)

    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield listen, blue, green, state
    finally:
        async def shutdown() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        for s in servers:
            s.shutdown()
            s.server_close()


def test_proxy_switches_without_a_failed_request(proxy_setup: tuple[int, int, int, Path]) -> None:
    listen, _blue, green, state = proxy_setup
    base = f"http://127.0.0.1:{listen}"
    assert requests.get(f"{base}/x", timeout=5).json()["backend"] == "blue"
    assert requests.get(f"{base}/_kaizen/proxy", timeout=5).status_code == 403
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        session = requests.Session()
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = session.post(f"{base}/predict", data=b"x" * 100, timeout=5)
                seen.add(r.json()["backend"])
                if r.status_code != 200:
                    failures.append(str(r.status_code))
            except requests.RequestException as exc:
                failures.append(repr(exc))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    r = requests.post(
        f"{base}/_kaizen/proxy/upstream",
        json={"port": green, "ready_path": "/"},
        headers={"X-Kaizen-Proxy-Token": "tok"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    assert failures == []
    assert seen == {"blue", "green"}
    assert requests.get(f"{base}/x", timeout=5).json()["backend"] == "green"
    assert state.read_text().strip() == f"127.0.0.1:{green}"
    # An upstream that is not ready is refused, and the proxy keeps the current one.
    dead = free_port()
    r = requests.post(
        f"{base}/_kaizen/proxy/upstream",
        json={"port": dead},
        headers={"X-Kaizen-Proxy-Token": "tok"},
        timeout=10,
    )
    assert r.status_code == 409
    assert requests.get(f"{base}/x", timeout=5).json()["backend"] == "green"


def test_proxy_relays_chunked_answers(proxy_setup: tuple[int, int, int, Path]) -> None:
    listen, *_ = proxy_setup
    r = requests.post(
        f"http://127.0.0.1:{listen}/predict",
        data=iter([b"a" * 10, b"b" * 5]),  # chunked request body
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["echo"] == 15


def test_capture_settings_become_env_and_a_host_directory(tmp_path: Path) -> None:
    from infra.local.providers import capture_directory
    from model_packages.serving.settings import CaptureSettings as RuntimeCapture

    s = LocalSettings.model_validate({"capture": {"rate": 0.25, "dir": str(tmp_path / "cap"), "format": "sagemaker"}})
    assert s.capture is not None
    env = s.capture.env()
    runtime = RuntimeCapture.from_env(env)  # the container's runtime accepts exactly this
    assert (runtime.rate, runtime.layout, runtime.destination) == (0.25, "sagemaker", "/var/lib/kaizen/capture")
    made = Path(capture_directory(s.capture.dir))
    assert made.is_dir() and (made.stat().st_uid == 10001 or os.geteuid() != 0)
    for bad, needle in (({"rate": 0, "dir": "/x"}, "rate"), ({"rate": 0.5, "dir": "relative"}, "dir"),
                        ({"rate": 0.5, "dir": "/x", "maxFileBytes": 10_000, "maxTotalBytes": 5000}, "maxTotalBytes")):
        with pytest.raises(ValidationError) as err:
            LocalSettings.model_validate({"capture": bad})
        assert needle in str(err.value) + json.dumps([e["loc"] for e in err.value.errors()])
