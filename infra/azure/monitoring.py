"""Azure Monitor for one endpoint: metric alerts (p99 latency, 5xx, saturation/throttling), a
scheduled query rule on Log Analytics for the runtime's drift log line, one portal dashboard."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure


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
        f'{source} | where tostring(d.event) == "drift" '
        "| summarize DriftAlarm = max(toint(d.drift_alarm)) by bin(TimeGenerated, 5m)"
    )


@dataclass(frozen=True)
class EndpointAlertsArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    base_name: str
    compute: str  # containerapp | ml
    target_name: str  # container app name or ML endpoint name (for log queries)
    target_id: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    action_group_id: pulumi.Input[str]
    latency_p99_ms: float
    errors_5xx_per_5min: int
    saturation_percent: float
    max_instances: int
    drift_false_alarm_days: float


class EndpointAlerts(pulumi.ComponentResource):
    alert_ids: dict[str, pulumi.Output[str]]
    dashboard_id: pulumi.Output[str]

    def __init__(self, name: str, args: EndpointAlertsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:azure:EndpointAlerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ml = args.compute == "ml"
        namespace = (
            "Microsoft.MachineLearningServices/workspaces/onlineEndpoints" if ml else "Microsoft.App/containerApps"
        )

        def metric_alert(
            key: str,
            description: str,
            metric: str,
            aggregation: str,
            operator: str,
            threshold: float,
            dimensions: list[azure.monitor.MetricDimensionArgs] | None = None,
            window: str = "PT5M",
        ) -> azure.monitor.MetricAlert:
            return azure.monitor.MetricAlert(
                f"{name}-{key}",
                azure.monitor.MetricAlertArgs(
                    resource_group_name=args.resource_group_name,
                    location="global",
                    rule_name=f"{args.base_name}-{key}",
                    description=description,
                    severity=2,
                    enabled=True,
                    scopes=[args.target_id],
                    evaluation_frequency="PT1M",
                    window_size=window,
                    auto_mitigate=True,
                    criteria=azure.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                        odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                        all_of=[
                            azure.monitor.MetricCriteriaArgs(
                                criterion_type="StaticThresholdCriterion",
                                name=key,
                                metric_name=metric,
                                metric_namespace=namespace,
                                operator=operator,
                                threshold=threshold,
                                time_aggregation=aggregation,
                                dimensions=dimensions,
                            )
                        ],
                    ),
                    actions=[azure.monitor.MetricAlertActionArgs(action_group_id=args.action_group_id)],
                ),
                opts=child,
            )

        if ml:
            latency = metric_alert(
                "latency-p99",
                f"p99 latency above {args.latency_p99_ms} ms",
                "RequestLatency_P99",
                "Average",
                "GreaterThan",
                args.latency_p99_ms,
            )
            # RequestsPerMinute supports only the Average aggregation (infra/azure/rules.py):
            # the mean per minute over 5 minutes above errors/5 is the same budget.
            errors = metric_alert(
                "errors-5xx",
                f"more than {args.errors_5xx_per_5min} 5xx in 5 minutes",
                "RequestsPerMinute",
                "Average",
                "GreaterThan",
                args.errors_5xx_per_5min / 5.0,
                [azure.monitor.MetricDimensionArgs(name="statusCodeClass", operator="Include", values=["5xx"])],
            )
            saturation = metric_alert(
                "saturation",
                "requests throttled (429)",
                "RequestsPerMinute",
                "Average",
                "GreaterThan",
                0.0,
                [azure.monitor.MetricDimensionArgs(name="statusCode", operator="Include", values=["429"])],
            )
        else:
            # Container Apps publishes no percentile metric. ResponseTime is the *average* per
            # status code, so this alert watches the slowest per-minute mean of successful (2xx)
            # responses against the budget: laxer than a p99, it catches sustained slowness only.
            latency = metric_alert(
                "latency-p99",
                f"mean 2xx response time above {args.latency_p99_ms} ms",
                "ResponseTime",
                "Maximum",
                "GreaterThan",
                args.latency_p99_ms,
                [azure.monitor.MetricDimensionArgs(name="statusCodeCategory", operator="Include", values=["2xx"])],
            )
            errors = metric_alert(
                "errors-5xx",
                f"more than {args.errors_5xx_per_5min} 5xx in 5 minutes",
                "Requests",
                "Total",
                "GreaterThan",
                float(args.errors_5xx_per_5min),
                [azure.monitor.MetricDimensionArgs(name="statusCodeCategory", operator="Include", values=["5xx"])],
            )
            saturation = metric_alert(
                "saturation",
                f"running at max replicas ({args.max_instances})",
                "Replicas",
                "Maximum",
                "GreaterThanOrEqual",
                float(args.max_instances),
                window="PT15M",
            )

        def log_alert(key: str, title: str, description: str, query: str, column: str, threshold: float):
            return azure.monitor.ScheduledQueryRule(
                f"{name}-{key}",
                azure.monitor.ScheduledQueryRuleArgs(
                    resource_group_name=args.resource_group_name,
                    location=args.location,
                    rule_name=f"{args.base_name}-{key}",
                    display_name=f"{args.base_name}: {title}",
                    description=description,
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
                                query=query,
                                time_aggregation="Maximum",
                                metric_measure_column=column,
                                operator="GreaterThan",
                                threshold=threshold,
                                failing_periods=azure.monitor.ConditionFailingPeriodsArgs(
                                    number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                                ),
                            )
                        ]
                    ),
                    actions=azure.monitor.ActionsArgs(action_groups=[args.action_group_id]),
                ),
                opts=child,
            )

        drift = log_alert(
            "drift",
            "calibrated drift alarm (drift_alarm=1)",
            "A drift window failed the runtime's calibrated test; false alarms about once per "
            f"{args.drift_false_alarm_days:g} days",
            drift_query(args.compute, args.target_name),
            "DriftAlarm",
            0,
        )
        if not ml:  # the platform's metrics have no percentile: a true p99 from the request log lines
            log_alert(
                "latency-p99-log",
                f"p99 latency above {args.latency_p99_ms} ms",
                "p99 of the runtime's per-request latency_ms over 5 minutes",
                latency_query(args.target_name),
                "P99",
                args.latency_p99_ms,
            )

        def chart(metric: str, aggregation: int) -> dict:
            return {
                "type": "Extension/HubsExtension/PartType/MonitorChartPart",
                "inputs": [
                    {
                        "name": "options",
                        "value": {
                            "chart": {
                                "metrics": [
                                    {
                                        "resourceMetadata": {"id": "TARGET"},
                                        "name": metric,
                                        "aggregationType": aggregation,
                                        "namespace": namespace,
                                    }
                                ],
                                "title": metric,
                            }
                        },
                    }
                ],
            }

        charts = (
            [chart("RequestLatency_P99", 4), chart("RequestsPerMinute", 1)]
            if ml
            else [chart("ResponseTime", 3), chart("Requests", 1), chart("Replicas", 3)]
        )

        def parts(target_id: str) -> list[azure.portal.DashboardPartsArgs]:
            out = []
            for i, c in enumerate(charts):
                meta = json.loads(json.dumps(c).replace('"TARGET"', json.dumps(target_id)))
                meta = azure.portal.DashboardPartMetadataArgs(type=meta["type"], inputs=meta["inputs"])
                out.append(
                    azure.portal.DashboardPartsArgs(
                        position=azure.portal.DashboardPartsPositionArgs(
                            x=(i % 2) * 6, y=(i // 2) * 4, col_span=6, row_span=4
                        ),
                        metadata=meta,
                    )
                )
            out.append(
                azure.portal.DashboardPartsArgs(
                    position=azure.portal.DashboardPartsPositionArgs(x=0, y=8, col_span=12, row_span=2),
                    metadata=azure.portal.DashboardPartMetadataArgs(
                        type="Extension/HubsExtension/PartType/MarkdownPart",
                        inputs=[],
                        settings={
                            "content": {
                                "settings": {
                                    "title": f"Kaizen {args.target_name}",
                                    "content": "Drift: Log Analytics query\n\n```\n"
                                    + drift_query(args.compute, args.target_name)
                                    + "\n```",
                                }
                            }
                        },
                    ),
                )
            )
            return out

        dashboard = azure.portal.Dashboard(
            f"{name}-dashboard",
            azure.portal.DashboardArgs(
                resource_group_name=args.resource_group_name,
                location=args.location,
                dashboard_name=f"{args.base_name}-dashboard",
                properties=azure.portal.DashboardPropertiesWithProvisioningStateArgs(
                    lenses=[
                        azure.portal.DashboardLensArgs(
                            order=0, parts=pulumi.Output.from_input(args.target_id).apply(parts)
                        )
                    ],
                ),
            ),
            opts=child,
        )
        self.alert_ids = {
            "latency": latency.id,
            "errors": errors.id,
            "saturation": saturation.id,
            "drift": drift.id,
        }
        self.dashboard_id = dashboard.id
        self.register_outputs({"alert_ids": self.alert_ids, "dashboard_id": self.dashboard_id})
