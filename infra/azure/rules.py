"""What Container Apps, Azure ML and Azure Monitor accept, from Azure's documentation and issue
trackers (one source per rule). Used by the stack code, the policy pack and tests/infra."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..common.rules import Res, Rule, as_list, get, in_range, is_num

APP = "azure-native:app:ContainerApp"
DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
QUERY_RULE = "azure-native:monitor:ScheduledQueryRule"
DIAGNOSTICS = "azure-native:monitor:DiagnosticSetting"
JOB = "azure-native:app:Job"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"

PROBES_DOC = "https://learn.microsoft.com/en-us/azure/container-apps/health-probes"
# Per probe type, as the service validates it (terraform-provider-azurerm aligned its validation
# "to match Azure API actual limits" in March 2026: hashicorp/terraform-provider-azurerm#31989).
PROBE_FAILURE_MAX = {"Liveness": 30, "Readiness": 48, "Startup": 240}
PROBE_FAILURE_MAX_SOURCE = "https://github.com/hashicorp/terraform-provider-azurerm/pull/31989"
# Strictest documented limit for any probe type: the Container Apps REST API spec (and every SDK
# generated from it, e.g. pulumi_azure_native/app/_inputs.py ContainerAppProbeArgs) says "Minimum
# value is 1. Maximum value is 10."; a service answer has shown ['1', '30']
# (microsoft/azure-container-apps#1100). Staying at or below 10 is safe whichever applies.
PROBE_FAILURE_SAFE_MAX = 10
PROBE_FAILURE_SAFE_SOURCE = (
    "https://learn.microsoft.com/en-us/dotnet/api/azure.provisioning.appcontainers.containerappprobe.failurethreshold"
)
PROBE_PERIOD = (1, 240)
PROBE_INITIAL_DELAY = (0, 60)
REVISION_SUFFIX_SOURCE = "https://github.com/microsoft/azure-container-apps/issues/1278"

QUERY_VALIDATION_SOURCE = "https://github.com/mspnp/aks-baseline/issues/422"
# Tables that exist only once the first log line arrives (custom / resource-specific log tables).
LATE_TABLES = ("ContainerAppConsoleLogs_CL", "ContainerAppSystemLogs_CL", "AmlOnlineEndpointConsoleLog")
TABLE_COLUMNS_DOC = "https://learn.microsoft.com/en-us/azure/azure-monitor/reference/tables/amlonlineendpointconsolelog"
TABLE_COLUMNS = {
    "AmlOnlineEndpointConsoleLog": {
        "ContainerImageName",
        "ContainerName",
        "DeploymentName",
        "InstanceId",
        "Message",
        "OperationName",
        "TimeGenerated",
        "_ResourceId",
        "Type",
        "TenantId",
    },
    "ContainerAppConsoleLogs_CL": {"ContainerAppName_s", "Log_s", "RevisionName_s", "TimeGenerated", "_ResourceId"},
}

ENDPOINT_LOGS_DOC = (
    "https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-logs/"
    "microsoft-machinelearningservices-workspaces-onlineendpoints-logs"
)
MANAGED_SCALE_DOC = "https://learn.microsoft.com/en-us/azure/machine-learning/reference-yaml-deployment-managed-online"
ML_METRICS_DOC = (
    "https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/"
    "microsoft-machinelearningservices-workspaces-onlineendpoints-metrics"
)
APP_METRICS_DOC = "https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-app-containerapps-metrics"
# (namespace, metric) -> aggregations the metric supports.
METRIC_AGGREGATIONS = {
    ("Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "RequestsPerMinute"): {"Average"},
    ("Microsoft.MachineLearningServices/workspaces/onlineEndpoints", "RequestLatency_P99"): {"Average"},
    ("Microsoft.App/containerApps", "Requests"): {"Total"},
    ("Microsoft.App/containerApps", "ResponseTime"): {"Average", "Maximum", "Minimum"},
    ("Microsoft.App/containerApps", "Replicas"): {"Average", "Maximum", "Minimum"},
}
TRAFFIC_DOC = "https://learn.microsoft.com/en-us/azure/machine-learning/how-to-safely-rollout-online-endpoints"


def _probes(res: Res, _: list[Res]) -> Iterable[str]:
    for c in as_list(get(res.props, "template", "containers")):
        for p in as_list(get(c, "probes")):
            if not isinstance(p, Mapping):
                continue
            kind, failures = p.get("type"), p.get("failureThreshold")
            if is_num(failures):
                limit = PROBE_FAILURE_MAX.get(str(kind), PROBE_FAILURE_SAFE_MAX)
                if not 1 <= failures <= limit:
                    yield f"{kind} probe failureThreshold {failures:g} outside [1, {limit}]"
            yield from in_range(p.get("periodSeconds"), *PROBE_PERIOD, f"{kind} probe periodSeconds")
            yield from in_range(p.get("initialDelaySeconds"), *PROBE_INITIAL_DELAY, f"{kind} initialDelaySeconds")


def _probes_safe(res: Res, _: list[Res]) -> Iterable[str]:
    for c in as_list(get(res.props, "template", "containers")):
        for p in as_list(get(c, "probes")):
            failures = get(p, "failureThreshold")
            if is_num(failures) and failures > PROBE_FAILURE_SAFE_MAX:
                yield f"{get(p, 'type')} probe failureThreshold {failures:g} > {PROBE_FAILURE_SAFE_MAX}"


def _revision_suffix(res: Res, _: list[Res]) -> Iterable[str]:
    if get(res.props, "template", "revisionSuffix"):
        yield "fixed revisionSuffix: a rollback or a settings-only change reuses it ('suffix already exists')"


def _query_validation(res: Res, _: list[Res]) -> Iterable[str]:
    queries = [get(c, "query") for c in as_list(get(res.props, "criteria", "allOf"))]
    text = " ".join(q for q in queries if isinstance(q, str))
    late = [t for t in LATE_TABLES if t in text]
    if late and res.props.get("skipQueryValidation") is not True:
        yield f"query on {late} (created by the first log line) without skipQueryValidation"
    for table, columns in TABLE_COLUMNS.items():
        if table not in text:
            continue
        for col in re.findall(r"\|\s*where\s+(?:tolower\()?(\w+)\b(?!\s*\()", text):
            if col not in columns:
                yield f"{table} has no column {col!r}"


def _diagnostics(res: Res, _: list[Res]) -> Iterable[str]:
    cats = [get(entry, "category") for entry in as_list(res.props.get("logs"))]
    uri = res.props.get("resourceUri")
    endpoint_logs = any(isinstance(c, str) and c.startswith("AmlOnlineEndpoint") for c in cats)
    if endpoint_logs and isinstance(uri, str) and not re.search(r"/onlineEndpoints/[^/]+$", uri, re.IGNORECASE):
        yield f"online-endpoint log categories on {uri.rsplit('/providers/', 1)[-1]}, not on an onlineEndpoint"


def _managed_scale(res: Res, _: list[Res]) -> Iterable[str]:
    props = res.props.get("properties") or {}
    if props.get("endpointComputeType") != "Managed":
        return
    scale = get(props, "scaleSettings", "scaleType")
    if scale not in (None, "Default"):
        yield f"scaleType {scale!r} on a managed deployment (only Default)"
    if get(props, "requestSettings", "maxConcurrentRequestsPerInstance") is None:
        yield "requestSettings.maxConcurrentRequestsPerInstance unset: Azure's default is 1 (429 beyond it)"


def _metric_aggregation(res: Res, _: list[Res]) -> Iterable[str]:
    for c in as_list(get(res.props, "criteria", "allOf")):
        key = (get(c, "metricNamespace"), get(c, "metricName"))
        allowed = METRIC_AGGREGATIONS.get(key)  # type: ignore[arg-type]
        agg = get(c, "timeAggregation")
        if allowed is not None and agg not in allowed:
            yield f"{key[1]} with aggregation {agg!r}; supported: {sorted(allowed)}"


def _traffic(res: Res, all_: list[Res]) -> Iterable[str]:
    traffic = get(res.props, "properties", "traffic")
    declared = {get(r.props, "deploymentName") for r in all_ if r.typ == DEPLOYMENT}
    if not traffic:
        yield f"no traffic map: the endpoint routes 0 % to {sorted(str(d) for d in declared)}"
        return
    if isinstance(traffic, Mapping):
        if sum(v for v in traffic.values() if is_num(v)) != 100:
            yield f"traffic {dict(traffic)} does not add up to 100"
        for name in traffic:
            if name not in declared:
                yield f"traffic to {name!r}, which this stack does not deploy"


UAI_STORAGE_DOC = "https://learn.microsoft.com/en-us/azure/machine-learning/concept-endpoints-online-auth"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def _uai_storage(res: Res, all_: list[Res]) -> Iterable[str]:
    if get(res.props, "identity", "type") != "UserAssigned":
        return
    roles = [
        str(r.props.get("roleDefinitionId", "")) for r in all_ if r.typ == "azure-native:authorization:RoleAssignment"
    ]
    if not any(r.endswith(STORAGE_BLOB_DATA_READER) for r in roles):
        yield "user-assigned endpoint identity without Storage Blob Data Reader (no automatic assignment for UAI)"


def _vault(res: Res, _: list[Res]) -> Iterable[str]:
    yield from in_range(get(res.props, "properties", "softDeleteRetentionInDays"), 7, 90, "softDeleteRetentionInDays")


def _datastore_auth(res: Res, _: list[Res]) -> Iterable[str]:
    mode = res.props.get("systemDatastoresAuthMode")
    if isinstance(mode, str) and mode not in ("AccessKey", "Identity", "UserDelegationSAS"):
        yield f"systemDatastoresAuthMode {mode!r} is not one of the API's values"


def _app_insights(res: Res, _: list[Res]) -> Iterable[str]:
    if res.props.get("workspaceResourceId") and "retentionInDays" in res.props:
        yield "retentionInDays on a workspace-based component (retention is the workspace's)"


JOBS_DOC = "https://learn.microsoft.com/en-us/azure/container-apps/jobs"
_CRON_FIELDS = 5  # "standard cron expression format": minute hour day-of-month month day-of-week, in UTC


def _job_trigger(res: Res, _: list[Res]) -> Iterable[str]:
    conf = res.props.get("configuration") or {}
    kind, schedule = get(conf, "triggerType"), get(conf, "scheduleTriggerConfig", "cronExpression")
    if kind == "Schedule":
        if not isinstance(schedule, str) or len(schedule.split()) != _CRON_FIELDS:
            yield f"a Schedule job needs a five-field cron expression, not {schedule!r}"
    elif get(conf, "scheduleTriggerConfig") is not None:
        yield f"scheduleTriggerConfig on a {kind} job (only Schedule jobs run on a cron)"
    timeout = get(conf, "replicaTimeout")
    if not is_num(timeout) or timeout < 1:
        yield f"replicaTimeout {timeout!r}: the maximum seconds a replica may run is required (>= 1)"


ASSIGNABLE_SCOPES_DOC = "https://learn.microsoft.com/en-us/azure/role-based-access-control/role-definitions#assignablescopes"
_ASSIGNABLE = re.compile(
    r"^(/|/providers/Microsoft\.Management/managementGroups/[^/]+|/subscriptions/[^/]+(/resourceGroups/[^/]+)?)$",
    re.IGNORECASE,
)


def _custom_role(res: Res, _: list[Res]) -> Iterable[str]:
    for scope in as_list(res.props.get("assignableScopes")):
        if isinstance(scope, str) and not _ASSIGNABLE.match(scope):
            yield f"assignable scope {scope!r}: a management group, subscription or resource group, not a resource"
    for perm in as_list(res.props.get("permissions")):
        for action in as_list(get(perm, "actions")) + as_list(get(perm, "dataActions")):
            if isinstance(action, str) and "*" in action:
                yield f"wildcard action {action!r} in a custom role"


RULES = [
    Rule("azure-job-trigger", (JOB,), _job_trigger, JOBS_DOC),
    Rule("azure-custom-role-scope", (ROLE_DEFINITION,), _custom_role, ASSIGNABLE_SCOPES_DOC),
    Rule("azure-probe-limits", (APP,), _probes, PROBE_FAILURE_MAX_SOURCE),
    Rule("azure-probe-failure-safe", (APP,), _probes_safe, PROBE_FAILURE_SAFE_SOURCE),
    Rule("azure-revision-suffix", (APP,), _revision_suffix, REVISION_SUFFIX_SOURCE),
    Rule("azure-log-query", (QUERY_RULE,), _query_validation, QUERY_VALIDATION_SOURCE),
    Rule("azure-endpoint-diagnostics", (DIAGNOSTICS,), _diagnostics, ENDPOINT_LOGS_DOC),
    Rule("azure-managed-deployment", (DEPLOYMENT,), _managed_scale, MANAGED_SCALE_DOC),
    Rule("azure-metric-aggregation", (METRIC_ALERT,), _metric_aggregation, ML_METRICS_DOC + " ; " + APP_METRICS_DOC),
    Rule("azure-endpoint-traffic", (ENDPOINT,), _traffic, TRAFFIC_DOC),
    Rule("azure-endpoint-uai-storage", (ENDPOINT,), _uai_storage, UAI_STORAGE_DOC),
    Rule(
        "azure-keyvault-soft-delete",
        ("azure-native:keyvault:Vault",),
        _vault,
        "https://learn.microsoft.com/en-us/azure/key-vault/general/soft-delete-overview",
    ),
    Rule(
        "azure-datastore-auth-mode",
        ("azure-native:machinelearningservices:Workspace",),
        _datastore_auth,
        "https://learn.microsoft.com/en-us/rest/api/azureml/workspaces/create-or-update",
    ),
    Rule(
        "azure-appinsights-retention",
        ("azure-native:applicationinsights:Component",),
        _app_insights,
        "https://learn.microsoft.com/en-us/azure/azure-monitor/app/create-workspace-resource",
    ),
]
