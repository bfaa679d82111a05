"""Azure Monitor for one endpoint: metric alerts (p99 latency, 5xx, saturation/throttling), a
scheduled query rule on Log Analytics for the runtime's drift log line, one portal dashboard.

The alerts are data: :func:`metric_alert_specs` and :func:`log_alert_specs` are the tables, and
:func:`_metric_alert` / :func:`_log_alert` turn a spec into a `MetricAlert` / `ScheduledQueryRule`
with what every alert shares (action group, severity, evaluation). The dashboard body is the pure
:func:`dashboard_body`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from model_packages.serving import contract as c

from ..common.config import Alerts
from ..common.dashboards import grid
from ..drift_config import DriftSettings

DRIFT_COLUMN = "DriftAlarm"


def latency_query(name: str) -> str:
    """KQL: true p99 from the runtime's per-request line `{"event":"request","latency_ms":x}`."""
    return (
        f'ContainerAppConsoleLogs_CL | where ContainerAppName_s == "{name}" | extend d = parse_json(Log_s) '
        '| where tostring(d.event) == "request" '
        "| summarize P99 = percentile(todouble(d.latency_ms), 99) by bin(TimeGenerated, 5m)"
    )


def drift_query(compute: str, name: str) -> str:
    """KQL turning the runtime's `{"event":"drift","drift_alarm":0|1}` lines (one per closed
    window, the calibrated verdict) into DriftAlarm."""
    if compute == "containerapp":
        source = f'ContainerAppConsoleLogs_CL | where ContainerAppName_s == "{name}" | extend d = parse_json(Log_s)'
    else:
        # The table has no EndpointName column; _ResourceId ends with /onlineEndpoints/<name>
        # (upper-case in the table) and the runtime logs from the inference-server container.
        source = (
            "AmlOnlineEndpointConsoleLog "
            f'| where tolower(_ResourceId) endswith "/onlineendpoints/{name.lower()}" '
            '| where ContainerName == "inference-server" | extend d = parse_json(Message)'
        )
    return (
        f'{source} | where tostring(d.event) == "{c.DRIFT_EVENT}" '
        f"| summarize {DRIFT_COLUMN} = max(toint(d.{c.DRIFT_ALARM_FIELD})) by bin(TimeGenerated, 5m)"
    )


def metric_namespace(compute: str) -> str:
    return "Microsoft.MachineLearningServices/workspaces/onlineEndpoints" if compute == "ml" else (
        "Microsoft.App/containerApps")


@dataclass(frozen=True)
class MetricAlertSpec:
    """One platform-metric alert: `key` names its rule (`<base>-<key>`) and resource (`<component>-<key>`)."""

    output: str  # key in EndpointMonitoring.alarm_names / alarm_ids
    key: str
    description: str
    metric: str
    aggregation: str
    operator: str
    threshold: float
    dimensions: tuple[tuple[str, str], ...] = ()  # (dimension, value) pairs, each included
    window: str = "PT5M"


@dataclass(frozen=True)
class LogAlertSpec:
    """One Log Analytics query alert on the runtime's log lines: fires when `column` exceeds `threshold`."""

    output: str | None  # key in alarm_names / alarm_ids, None: not exported
    key: str
    title: str
    description: str
    query: str
    column: str
    threshold: float
    drift: bool = False  # notifies the drift action groups too


def metric_alert_specs(compute: str, alerts: Alerts, max_instances: int) -> list[MetricAlertSpec]:
    """Latency, 5xx and saturation from the platform's metrics (which differ per compute)."""
    errors = f"more than {alerts.errors_5xx_per_5min} 5xx in 5 minutes"
    if compute == "ml":
        return [
            MetricAlertSpec("latency", "latency-p99", f"p99 latency above {alerts.latency_p99_ms} ms",
                            "RequestLatency_P99", "Average", "GreaterThan", alerts.latency_p99_ms),
            # RequestsPerMinute supports only the Average aggregation (infra/azure/rules.py):
            # the mean per minute over 5 minutes above errors/5 is the same budget.
            MetricAlertSpec("errors", "errors-5xx", errors, "RequestsPerMinute", "Average", "GreaterThan",
                            alerts.errors_5xx_per_5min / 5.0, (("statusCodeClass", "5xx"),)),
            MetricAlertSpec("saturation", "saturation", "requests throttled (429)", "RequestsPerMinute", "Average",
                            "GreaterThan", 0.0, (("statusCode", "429"),)),
        ]
    # Container Apps publishes no percentile metric. ResponseTime is the *average* per status
    # code, so this alert watches the slowest per-minute mean of successful (2xx) responses
    # against the budget: laxer than a p99, it catches sustained slowness only.
    return [
        MetricAlertSpec("latency", "latency-p99", f"mean 2xx response time above {alerts.latency_p99_ms} ms",
                        "ResponseTime", "Maximum", "GreaterThan", alerts.latency_p99_ms,
                        (("statusCodeCategory", "2xx"),)),
        MetricAlertSpec("errors", "errors-5xx", errors, "Requests", "Total", "GreaterThan",
                        float(alerts.errors_5xx_per_5min), (("statusCodeCategory", "5xx"),)),
        MetricAlertSpec("saturation", "saturation", f"running at max replicas ({max_instances})", "Replicas",
                        "Maximum", "GreaterThanOrEqual", float(max_instances), window="PT15M"),
    ]


def log_alert_specs(compute: str, target_name: str, alerts: Alerts, drift: DriftSettings) -> list[LogAlertSpec]:
    """Drift from the runtime's drift line; on Container Apps also a true p99 from its request lines."""
    specs = [LogAlertSpec(
        "drift", "drift", f"calibrated drift alarm ({c.DRIFT_ALARM_FIELD}=1)",
        "A drift window failed the runtime's calibrated test; false alarms about once per "
        f"{drift.false_alarm_days:g} days", drift_query(compute, target_name), DRIFT_COLUMN, 0, drift=True)]
    if compute != "ml":  # the platform's metrics have no percentile: a true p99 from the request log lines
        specs.append(LogAlertSpec(
            None, "latency-p99-log", f"p99 latency above {alerts.latency_p99_ms} ms",
            "p99 of the runtime's per-request latency_ms over 5 minutes", latency_query(target_name), "P99",
            alerts.latency_p99_ms))
    return specs


def dashboard_body(compute: str, target_name: str, target_id: str) -> dict[str, Any]:
    """The portal dashboard (ARM `properties`): the platform's charts, then the drift query."""
    namespace = metric_namespace(compute)
    charts = ([("RequestLatency_P99", 4), ("RequestsPerMinute", 1)] if compute == "ml"
              else [("ResponseTime", 3), ("Requests", 1), ("Replicas", 3)])
    parts: list[dict[str, Any]] = [
        {"position": {"x": x, "y": y, "colSpan": 6, "rowSpan": 4}, "metadata": {
            "type": "Extension/HubsExtension/PartType/MonitorChartPart",
            "inputs": [{"name": "options", "value": {"chart": {
                "metrics": [{"resourceMetadata": {"id": target_id}, "name": metric, "aggregationType": aggregation,
                             "namespace": namespace}],
                "title": metric}}}]}}
        for x, y, (metric, aggregation) in grid(charts, 6, 4)
    ]
    parts.append({"position": {"x": 0, "y": 8, "colSpan": 12, "rowSpan": 2}, "metadata": {  # below two chart rows
        "type": "Extension/HubsExtension/PartType/MarkdownPart", "inputs": [],
        "settings": {"content": {"settings": {
            "title": f"Kaizen {target_name}",
            "content": "Drift: Log Analytics query\n\n```\n" + drift_query(compute, target_name) + "\n```"}}}}})
    return {"lenses": [{"order": 0, "parts": parts}]}


@dataclass(frozen=True)
class EndpointMonitoringArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    base_name: str
    compute: str  # containerapp | ml
    target_name: str  # container app name or ML endpoint name (for log queries)
    target_id: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    action_group_id: pulumi.Input[str]
    alerts: Alerts
    drift: DriftSettings
    max_instances: int
    # Extra action groups of the drift alert only (the retraining job's starter, infra/azure/retraining.py).
    drift_action_group_ids: tuple[pulumi.Input[str], ...] = ()


class EndpointMonitoring(pulumi.ComponentResource):
    alarm_names: dict[str, pulumi.Output[str]]  # the alert rules' names
    alarm_ids: dict[str, pulumi.Output[str]]  # their ARM ids
    dashboard: pulumi.Output[str]  # the dashboard's ARM id

    def __init__(self, name: str, args: EndpointMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        # Was kaizen:azure:EndpointAlerts: the alias keeps the deployed alerts (and every child).
        aliased = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="kaizen:azure:EndpointAlerts")])
        super().__init__("kaizen:azure:EndpointMonitoring", name, None, pulumi.ResourceOptions.merge(opts, aliased))
        child = pulumi.ResourceOptions(parent=self)
        rules: dict[str, azure.monitor.MetricAlert | azure.monitor.ScheduledQueryRule] = {}
        for spec in metric_alert_specs(args.compute, args.alerts, args.max_instances):
            rules[spec.output] = _metric_alert(name, args, spec, child)
        for log_spec in log_alert_specs(args.compute, args.target_name, args.alerts, args.drift):
            groups = [args.action_group_id, *(args.drift_action_group_ids if log_spec.drift else ())]
            rule = _log_alert(name, args, log_spec, groups, child)
            if log_spec.output is not None:
                rules[log_spec.output] = rule
        dashboard = azure.portal.Dashboard(
            f"{name}-dashboard",
            azure.portal.DashboardArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                dashboard_name=f"{args.base_name}-dashboard",
                properties=azure.portal.DashboardPropertiesWithProvisioningStateArgs(
                    lenses=[
                        azure.portal.DashboardLensArgs(
                            order=0,
                            parts=pulumi.Output.from_input(args.target_id).apply(
                                lambda target: _parts(dashboard_body(args.compute, args.target_name, target))
                            ),
                        )
                    ],
                ),
            ),
            opts=child,
        )
        order = ("latency", "errors", "saturation", "drift")
        self.alarm_names = {key: rules[key].name for key in order}
        self.alarm_ids = {key: rules[key].id for key in order}
        self.dashboard = dashboard.id
        self.register_outputs({"alarm_ids": self.alarm_ids, "dashboard": self.dashboard})


def _metric_alert(
    component: str, args: EndpointMonitoringArgs, spec: MetricAlertSpec, opts: pulumi.ResourceOptions
) -> azure.monitor.MetricAlert:
    """One metric alert of the table, with what they all share: the target, every minute, auto-resolved."""
    return azure.monitor.MetricAlert(
        f"{component}-{spec.key}",
        azure.monitor.MetricAlertArgs(
            resource_group_name=args.resource_group_name,
            location="global",
            rule_name=f"{args.base_name}-{spec.key}",
            description=spec.description,
            severity=2,
            enabled=True,
            scopes=[args.target_id],
            evaluation_frequency="PT1M",
            window_size=spec.window,
            auto_mitigate=True,
            criteria=azure.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[
                    azure.monitor.MetricCriteriaArgs(
                        criterion_type="StaticThresholdCriterion",
                        name=spec.key,
                        metric_name=spec.metric,
                        metric_namespace=metric_namespace(args.compute),
                        operator=spec.operator,
                        threshold=spec.threshold,
                        time_aggregation=spec.aggregation,
                        dimensions=[
                            azure.monitor.MetricDimensionArgs(name=dimension, operator="Include", values=[value])
                            for dimension, value in spec.dimensions
                        ]
                        or None,
                    )
                ],
            ),
            actions=[azure.monitor.MetricAlertActionArgs(action_group_id=args.action_group_id)],
        ),
        opts=opts,
    )


def _log_alert(
    component: str,
    args: EndpointMonitoringArgs,
    spec: LogAlertSpec,
    action_groups: list[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> azure.monitor.ScheduledQueryRule:
    """One query alert of the table, with what they all share: the workspace, every 5 minutes over 15."""
    return azure.monitor.ScheduledQueryRule(
        f"{component}-{spec.key}",
        azure.monitor.ScheduledQueryRuleArgs(
            resource_group_name=args.resource_group_name,
            location=args.location,
            rule_name=f"{args.base_name}-{spec.key}",
            display_name=f"{args.base_name}: {spec.title}",
            description=spec.description,
            kind="LogAlert",
            severity=2,
            enabled=True,
            scopes=[args.workspace_id],
            # The console-log tables exist only after the first log line; Azure validates
            # the query at creation otherwise (infra/azure/rules.py).
            skip_query_validation=True,
            evaluation_frequency="PT5M",
            window_size="PT15M",
            criteria=azure.monitor.ScheduledQueryRuleCriteriaArgs(
                all_of=[
                    azure.monitor.ConditionArgs(
                        query=spec.query,
                        time_aggregation="Maximum",
                        metric_measure_column=spec.column,
                        operator="GreaterThan",
                        threshold=spec.threshold,
                        failing_periods=azure.monitor.ConditionFailingPeriodsArgs(
                            number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                        ),
                    )
                ]
            ),
            actions=azure.monitor.ActionsArgs(action_groups=action_groups),
        ),
        opts=opts,
    )


def _parts(body: dict[str, Any]) -> list[azure.portal.DashboardPartsArgs]:
    """The typed parts of a :func:`dashboard_body`'s one lens."""
    return [
        azure.portal.DashboardPartsArgs(
            position=azure.portal.DashboardPartsPositionArgs(
                x=p["position"]["x"], y=p["position"]["y"],
                col_span=p["position"]["colSpan"], row_span=p["position"]["rowSpan"],
            ),
            metadata=azure.portal.DashboardPartMetadataArgs(
                type=p["metadata"]["type"], inputs=p["metadata"]["inputs"], settings=p["metadata"].get("settings")
            ),
        )
        for p in body["lenses"][0]["parts"]
    ]
