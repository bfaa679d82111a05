"""Monitoring as data: the alarm tables and dashboard bodies of each cloud, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from infra.aws import monitoring as aws_mon
from infra.azure import monitoring as az_mon
from infra.common.config import Alerts
from infra.common.dashboards import grid
from infra.drift_config import DriftSettings
from infra.gcp import monitoring as gcp_mon
from model_packages.serving import contract as c

ALERTS = Alerts(latency_p99_ms=250, errors_5xx_per_5min=7, saturation_percent=60)
DRIFT = DriftSettings(false_alarm_days=14, window_seconds=1800)


def test_grid_is_two_columns_row_major() -> None:
    assert list(grid("abcde", 12, 6)) == [(0, 0, "a"), (12, 0, "b"), (0, 6, "c"), (12, 6, "d"), (0, 12, "e")]
    assert list(grid("ab", 4, 4, columns=3)) == [(0, 0, "a"), (4, 0, "b")]


@pytest.mark.parametrize("serverless", [False, True])
def test_aws_alarm_table(serverless: bool) -> None:
    specs = {s.output: s for s in aws_mon.alarm_specs("ep", ALERTS, DRIFT, serverless, vcpus=4)}
    assert list(specs) == ["latency", "errors", "saturation", "drift"]
    assert {s.metric for s in specs.values()} >= set(aws_mon.REQUIRED_METRICS)
    assert (specs["latency"].statistic, specs["latency"].threshold) == ("p99", 250_000.0)  # microseconds
    assert (specs["errors"].threshold, specs["errors"].period) == (7.0, 300)
    saturation = specs["saturation"]
    if serverless:
        assert (saturation.metric, saturation.threshold) == (aws_mon.SERVERLESS_SATURATION_METRIC, 0.6)
    else:
        assert (saturation.metric, saturation.threshold) == (aws_mon.CPU_METRIC, 240)  # a sum over 4 cores
    drift = specs["drift"]
    assert (drift.namespace, drift.metric, drift.period) == ("Kaizen/ep", aws_mon.DRIFT_METRIC, 1800)
    assert drift.comparison == "GreaterThanOrEqualToThreshold" and not drift.endpoint_dimensions
    assert "14 days" in drift.description
    assert "{ $.event = " + f'"{c.DRIFT_EVENT}"' + " }" == aws_mon.DRIFT_PATTERN
    assert [f[2] for f in aws_mon.DRIFT_FILTERS] == [c.DRIFT_ALARM_FIELD, c.DRIFT_STATISTIC_FIELD]


def test_aws_dashboard_body() -> None:
    body = aws_mon.dashboard_body("ep", "eu-west-1", serverless=False)
    widgets = body["widgets"]
    assert [(w["x"], w["y"], w["width"], w["height"]) for w in widgets] == [
        (0, 0, 12, 6), (12, 0, 12, 6), (0, 6, 12, 6), (12, 6, 12, 6)]
    assert {w["properties"]["region"] for w in widgets} == {"eu-west-1"}
    assert widgets[0]["properties"]["metrics"] == [
        ["AWS/SageMaker", "ModelLatency", "EndpointName", "ep", "VariantName", "AllTraffic", {"stat": "p99"}]]
    assert widgets[2]["properties"]["metrics"][0][1] == aws_mon.CPU_METRIC
    assert aws_mon.dashboard_body("ep", "eu-west-1", serverless=True)["widgets"][2]["properties"]["metrics"][0][1] \
        == aws_mon.SERVERLESS_SATURATION_METRIC
    assert widgets[3]["properties"]["metrics"] == [["Kaizen/ep", "DriftStatistic", {"stat": "Maximum"}],
                                                   ["Kaizen/ep", "DriftAlarm", {"stat": "Maximum"}]]


def test_gcp_policy_table() -> None:
    specs = {s.output: s for s in gcp_mon.alarm_specs("svc", ALERTS, DRIFT)}
    assert list(specs) == ["latency", "errors", "saturation", "drift"]
    assert [s.drift for s in specs.values()] == [False, False, False, True]
    filters = " ".join(cond.metric for s in specs.values() for cond in s.conditions)
    assert all(needle in filters for needle in gcp_mon.REQUIRED_METRICS)
    assert specs["latency"].conditions[0].threshold == 250
    assert (specs["errors"].conditions[0].threshold, specs["errors"].conditions[0].reducer) == (7.0, "REDUCE_SUM")
    cpu, throttled = specs["saturation"].conditions
    assert (cpu.threshold, cpu.duration, throttled.metric) == (0.6, "600s", gcp_mon.THROTTLED)
    (drift,) = specs["drift"].conditions
    assert drift.metric == 'metric.type="logging.googleapis.com/user/Kaizen/svc/DriftAlarms"'
    assert "14 days" in specs["drift"].title
    expected = f'jsonPayload.event="{c.DRIFT_EVENT}" AND jsonPayload.{c.DRIFT_ALARM_FIELD}=1'
    assert expected == gcp_mon.DRIFT_ALARM_FILTER


def test_gcp_dashboard_body() -> None:
    body = gcp_mon.dashboard_body("svc")
    tiles = body["mosaicLayout"]["tiles"]
    assert body["displayName"] == "Kaizen svc" and body["mosaicLayout"]["columns"] == 12
    assert [(t["xPos"], t["yPos"], t["width"], t["height"]) for t in tiles] == [
        (0, 0, 6, 4), (6, 0, 6, 4), (0, 4, 6, 4), (6, 4, 6, 4)]
    flt = tiles[3]["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
    drift = 'metric.type="logging.googleapis.com/user/Kaizen/svc/DriftAlarms"'
    assert flt == f'{gcp_mon.service_filter("svc")} AND {drift}'


@pytest.mark.parametrize("compute", ["containerapp", "ml"])
def test_azure_alert_tables(compute: str) -> None:
    metric = {s.output: s for s in az_mon.metric_alert_specs(compute, ALERTS, max_instances=3)}
    assert list(metric) == ["latency", "errors", "saturation"]
    assert [s.key for s in metric.values()] == ["latency-p99", "errors-5xx", "saturation"]  # either compute
    logs = {s.key: s for s in az_mon.log_alert_specs(compute, "app", ALERTS, DRIFT)}
    drift = logs.pop("drift")
    assert drift.drift and drift.column == az_mon.DRIFT_COLUMN and "14 days" in drift.description
    assert f'tostring(d.event) == "{c.DRIFT_EVENT}"' in drift.query and f"d.{c.DRIFT_ALARM_FIELD}" in drift.query
    if compute == "ml":
        assert metric["errors"].threshold == 7 / 5.0 and metric["saturation"].dimensions == (("statusCode", "429"),)
        assert logs == {}
    else:
        assert metric["saturation"].threshold == 3.0 and metric["saturation"].window == "PT15M"
        assert logs["latency-p99-log"].output is None and logs["latency-p99-log"].threshold == 250


@pytest.mark.parametrize(("compute", "charts"), [("containerapp", 3), ("ml", 2)])
def test_azure_dashboard_body(compute: str, charts: int) -> None:
    (lens,) = az_mon.dashboard_body(compute, "app", "/subscriptions/0/x/app")["lenses"]
    *chart_parts, markdown = lens["parts"]
    assert len(chart_parts) == charts
    assert [(p["position"]["x"], p["position"]["y"]) for p in chart_parts] == [(0, 0), (6, 0), (0, 4)][:charts]
    for part in chart_parts:
        (metric,) = part["metadata"]["inputs"][0]["value"]["chart"]["metrics"]
        assert metric["resourceMetadata"] == {"id": "/subscriptions/0/x/app"}
        assert metric["namespace"] == az_mon.metric_namespace(compute)
    assert markdown["position"] == {"x": 0, "y": 8, "colSpan": 12, "rowSpan": 2}
    assert az_mon.drift_query(compute, "app") in markdown["metadata"]["settings"]["content"]["settings"]["content"]


@pytest.mark.parametrize(("stack", "name", "old"), [("gcp-dev", "monitoring", "kaizen:gcp:ServiceMonitoring"),
                                                    ("azure-dev", "alerts", "kaizen:azure:EndpointAlerts")])
def test_renamed_components_alias_their_old_type(monkeypatch: pytest.MonkeyPatch, stack: str, name: str,
                                                  old: str) -> None:
    """A real `pulumi up` after the rename moves the deployed alerts instead of replacing them."""
    from tests.infra import conftest

    seen: dict[str, list] = {}
    register = conftest.RecordingMonitor.RegisterResource

    def recording(monitor: Any, request: Any) -> Any:
        if request.name == name and request.type.endswith("EndpointMonitoring"):
            seen[request.type] = [(a.urn, a.spec.type) for a in request.aliases] + list(request.aliasURNs)
        return register(monitor, request)

    monkeypatch.setattr(conftest.RecordingMonitor, "RegisterResource", recording)
    conftest.run_program(stack)
    (aliases,) = seen.values()
    assert any(old in str(a) for a in aliases), aliases
