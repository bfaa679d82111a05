"""The local stack program with `kaizen:local.alerting`, under Pulumi mocks: a plaintext token is refused
before any resource; a secret one gives an Alerting component whose Alertmanager is checked by amtool,
bound to loopback with clustering off, and a Prometheus that sends to it."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pulumi
import pytest

from tests.infra.conftest import RecordingMocks, RecordingMonitor
from tests.support import ROOT

TOKEN = "mock-webhook-token-0123456789"
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's secret
CONFIG = {
    "target": "local", "stackKind": "dev", "owner": "ml-platform", "costCenter": "ml-0001",
    "local": {"package": str(ROOT / "examples" / "iris-classifier"), "registryPort": 25001, "endpointPort": 25080,
              "prometheusPort": 25090, "scrapeInterval": "1s",
              "alerting": {"port": 25093, "webhookUrl": "http://127.0.0.1:25400/alerts", "webhookToken": TOKEN}},
}


def _run(secret: bool, mocks: RecordingMocks | None = None) -> RecordingMocks:
    from infra import program

    mocks = mocks or RecordingMocks({})
    pulumi.runtime.set_mocks(mocks, project="kaizen", stack="local-alerting", preview=False,
                             monitor=RecordingMonitor(mocks))
    raw = {f"kaizen:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in CONFIG.items()}
    pulumi.runtime.set_all_config(raw, ["kaizen:local"] if secret else [])

    @pulumi.runtime.test
    def _main() -> Any:
        return pulumi.Output.from_input(program.main())

    try:
        _main()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return mocks


@pytest.fixture(autouse=True)
def _binaries() -> None:
    for tool in ("prometheus-alertmanager", "amtool", "prometheus", "docker-registry"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup.sh)")


def test_a_plaintext_webhook_token_is_refused_before_any_resource() -> None:
    mocks = RecordingMocks({})
    with pytest.raises(Exception, match=r"kaizen:local\.alerting\.webhookToken: kept in plain text"):
        _run(secret=False, mocks=mocks)
    assert [r.typ for r in mocks.resources if r.custom] == []


def test_alertmanager_is_declared_checked_and_prometheus_sends_to_it() -> None:
    mocks = _run(secret=True)
    components = {r.typ for r in mocks.resources}
    assert "kaizen:local:Alerting" in components
    services = {r.inputs.get("role"): r.inputs for r in mocks.resources if r.typ.endswith("Service")}
    am = services["alertmanager"]
    assert am["check"] == ["amtool", "check-config", "/etc/kaizen/alertmanager.yml"]
    assert "--web.listen-address=127.0.0.1:25093" in am["command"] and "--cluster.listen-address=" in am["command"]
    files = am["files"]  # registered as a secret: the engine encrypts it in the state
    assert files[SIG_KEY] == SECRET_SIG
    assert TOKEN in files["value"]["/etc/kaizen/alertmanager.yml"]
    prometheus = json.loads(services["prometheus"]["files"]["/etc/kaizen/prometheus.yml"])
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:25093"]
    tools = next(r.inputs for r in mocks.resources if r.typ.endswith("ToolsImage"))
    assert {"alertmanager", "amtool"} <= set(tools["binaries"])


class _AliasMonitor(RecordingMonitor):
    """Also records the aliases each resource is registered with (as specs or as URNs)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.aliases: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.aliases[request.name] = [*(str(a) for a in request.aliases), *request.aliasURNs]
        return super().RegisterResource(request)


def test_the_model_image_build_keeps_the_state_of_its_old_type() -> None:
    """ModelImageBuild used to register as type `ModelImage`: the alias keeps an existing stack's build
    (no rebuild and re-push on the first `pulumi up` after the rename)."""
    mocks = RecordingMocks({})
    monitor = _AliasMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="kaizen", stack="local-alerting", preview=False, monitor=monitor)
    raw = {f"kaizen:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in CONFIG.items()}
    pulumi.runtime.set_all_config(raw, ["kaizen:local"])
    from infra import program

    @pulumi.runtime.test
    def _main() -> Any:
        return pulumi.Output.from_input(program.main())

    try:
        _main()
    finally:
        pulumi.runtime.set_all_config({}, [])
    build = next(r for r in mocks.resources if r.name == "model-image-build")
    assert build.typ == "pulumi-python:dynamic/kaizen-local:ModelImageBuild"
    assert any("dynamic/kaizen-local:ModelImage" in a and "ModelImageBuild" not in a
               for a in monitor.aliases["model-image-build"]), monitor.aliases["model-image-build"]
