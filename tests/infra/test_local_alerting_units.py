"""`kaizen:local.alerting` without Docker: validated settings, an Alertmanager config that `amtool
check-config` accepts and that routes only the named alerts to the webhook, Prometheus pointed at it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.common.local_config import AlertingSettings, LocalSettings
from infra.local.monitoring import alertmanager_config, prometheus_config
from tests.support import unavailable

TOKEN = "t0ken-of-the-webhook-123"
ALERTING = {"port": 19093, "webhookUrl": "http://127.0.0.1:19400/alerts", "webhookToken": TOKEN}


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} not installed",
                    ci=f"{tool} (Debian prometheus-alertmanager / prometheus) not installed in CI")
    return found


def test_alerting_settings_defaults_and_derived_values() -> None:
    s = LocalSettings.model_validate({"alerting": ALERTING, "drift": {"windowRows": 200, "minRows": 50}})
    assert s.alerting is not None
    assert (s.alerting.port, s.alerting.webhook_port, s.alerting.alerts) == (19093, 19400, ["KaizenDrift"])
    assert (s.alerting.group_wait, s.alerting.repeat_interval) == ("1s", "1h")
    env = s.drift.as_env()
    assert (env["KAIZEN_DRIFT_WINDOW_ROWS"], env["KAIZEN_DRIFT_MIN_ROWS"]) == ("200", "50")
    assert TOKEN not in repr(s.alerting)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"webhookUrl": "http://10.0.0.5:9400/alerts"}, "on this machine only"),
        ({"webhookUrl": "https://127.0.0.1:9400/alerts"}, "on this machine only"),
        ({"webhookUrl": "http://127.0.0.1/alerts"}, "on this machine only"),
        ({"webhookToken": "short"}, "webhookToken"),
        ({"webhookToken": "a token with spaces in it"}, "without spaces"),
        ({"groupWait": "soon"}, "groupWait"),
        ({"alerts": []}, "alerts"),
        ({"port": 80}, "port"),
        ({"reciever": "x"}, "reciever"),
    ],
)
def test_bad_alerting_settings_name_the_key(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        LocalSettings.model_validate({"alerting": {**ALERTING, **change}})
    text = str(err.value) + json.dumps([e["loc"] for e in err.value.errors()])
    assert needle in text


def test_alerting_ports_must_not_collide() -> None:
    with pytest.raises(ValidationError, match=r"alerting\.port and prometheusPort are both 9090"):
        LocalSettings.model_validate({"alerting": {**ALERTING, "port": 9090}})
    with pytest.raises(ValidationError, match=r"alerting\.webhookUrl and endpointPort are both 8080"):
        LocalSettings.model_validate({"alerting": {**ALERTING, "webhookUrl": "http://127.0.0.1:8080/a"}})
    with pytest.raises(ValidationError, match=r"minRows \(500\) is larger than windowRows \(100\)"):
        LocalSettings.model_validate({"drift": {"windowRows": 100, "minRows": 500}})


def test_alertmanager_routes_the_named_alerts_to_the_webhook_with_the_token(tmp_path: Path) -> None:
    amtool = _need("amtool")
    settings = AlertingSettings.model_validate({**ALERTING, "alerts": ["KaizenDrift", "KaizenEndpointDown"]})
    text = alertmanager_config(settings)
    doc = json.loads(text)
    route = doc["route"]
    assert route["receiver"] == "discard" and route["group_wait"] == "1s"
    matchers = ['alertname=~"KaizenDrift|KaizenEndpointDown"']
    assert route["routes"] == [{"receiver": "kaizen-webhook", "matchers": matchers}]
    hook = {r["name"]: r for r in doc["receivers"]}["kaizen-webhook"]["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:19400/alerts"
    assert hook["http_config"]["authorization"] == {"type": "Bearer", "credentials": TOKEN}
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    proc = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # amtool's own routing test: the drift alert reaches the webhook, the latency alert does not.
    for alert, receiver in (("KaizenDrift", "kaizen-webhook"), ("KaizenHighP99Latency", "discard")):
        proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", f"alertname={alert}"],
                              capture_output=True, text=True)
        assert proc.stdout.strip() == receiver, proc.stdout + proc.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace('"discard"', '"nowhere"', 1))
    proc = subprocess.run([amtool, "check-config", str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0 and "nowhere" in proc.stdout + proc.stderr


def test_prometheus_sends_its_alerts_to_alertmanager(tmp_path: Path) -> None:
    promtool = _need("promtool")
    doc = json.loads(prometheus_config(target="127.0.0.1:1", scrape_interval="1s", model="m",
                                       alertmanager="127.0.0.1:19093"))
    assert doc["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:19093"]}]}]}
    assert "alerting" not in json.loads(prometheus_config(target="127.0.0.1:1", scrape_interval="1s", model="m"))
    doc["rule_files"] = []
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps(doc))
    proc = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
