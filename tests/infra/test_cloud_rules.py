"""Every committed stack, run under mocks with the platform stacks' own outputs, against the
clouds' documented rules (infra/<cloud>/rules.py); each rule is shown to catch a bad value."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.cloud_rules import all_rules
from infra.common.rules import Res, Rule, evaluate

from .conftest import STACKS, Run, platform_outputs, run_program, stack_file
from .test_stacks import ALL

RULES = {r.id: r for r in all_rules()}


def resources(run: Run) -> list[Res]:
    return [Res(r.typ, r.name, r.inputs, r.urn, r.deps) for r in run.custom]


def test_every_committed_stack_file_is_run() -> None:
    committed = {p for p in STACKS.glob("Pulumi.*.yaml")} | set((STACKS / "templates").glob("Pulumi.pr.*.yaml"))
    # the local target runs for real in tests/e2e (Docker, registry, Prometheus), not under mocks
    committed -= {STACKS / "Pulumi.local.yaml", STACKS / "templates" / "Pulumi.pr.local.yaml"}
    assert committed == {stack_file(s) for s in ALL}


@pytest.mark.parametrize("stack", ALL)
def test_stack_meets_the_cloud_rules(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    assert [str(v) for v in evaluate(resources(run), all_rules())] == []


@pytest.mark.parametrize("stack", ALL)
def test_stack_previews_clean(stack_run, stack: str) -> None:
    # what `pulumi preview` runs: the same program in preview mode, with the platform stack's outputs
    preview = run_program(stack, preview=True)
    assert sorted((r.typ, r.name) for r in preview.custom) == sorted((r.typ, r.name) for r in stack_run(stack).custom)
    assert [str(v) for v in evaluate(resources(preview), all_rules())] == []


def test_rules_cite_their_source() -> None:
    assert len(RULES) == len(all_rules()) >= 20
    for rule in RULES.values():
        assert rule.source.startswith("https://"), rule.id
        assert rule.types and all(":" in t for t in rule.types), rule.id


def test_platform_outputs_come_from_the_platform_programs() -> None:
    outputs = platform_outputs()
    assert outputs["organization/kaizen/azure-platform"]["loginServer"] == "kaizenazureplatform.azurecr.io"
    aws = outputs["organization/kaizen/aws-platform"]
    assert aws["repositoryUrls"]["iris"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris"
    assert (
        outputs["organization/kaizen/gcp-platform"]["repositoryUrl"] == "europe-west4-docker.pkg.dev/kaizen-test/kaizen"
    )


@pytest.mark.parametrize("stack", [s for s in ALL if not s.endswith("platform")])
def test_stack_image_lives_in_the_platform_registry(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    ref = f"organization/kaizen/{stack.split('-')[0]}-platform"
    out = platform_outputs()[ref]
    registry = out.get("loginServer") or out.get("repositoryUrl") or out["repositoryUrls"]["iris"]
    assert run.outputs["image"].startswith(registry + ("/" if "repositoryUrls" not in out else "@"))


# --- each rule catches what it is for ------------------------------------------------------------
Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[str | int, ...], value: Any) -> Mutation:
    def mutate(props: dict[str, Any]) -> None:
        cur: Any = props
        for key in path[:-1]:
            cur = cur[key]
        if value is _DROP:
            cur.pop(path[-1], None)
        else:
            cur[path[-1]] = value

    return mutate


_DROP = object()


def _startup(failures: int) -> Mutation:
    def mutate(props: dict[str, Any]) -> None:
        for p in props["template"]["containers"][0]["probes"]:
            if p["type"] == "Startup":
                p["failureThreshold"] = failures

    return mutate


def _drop_token(props: dict[str, Any]) -> None:
    doc = json.loads(props["policy"])
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") not in ("EcrAuthToken", "ReadRollbackAlarms")]
    props["policy"] = json.dumps(doc)


BAD: list[tuple[str, str, str, Mutation]] = [
    (
        "aws-serverless-model-exclusions",
        "aws-pr-7",
        "aws:sagemaker/model:Model",
        _set(("enableNetworkIsolation",), True),
    ),
    (
        "aws-serverless-config",
        "aws-pr-7",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        _set(("productionVariants", 0, "serverlessConfig", "memorySizeInMb"), 1536),
    ),
    (
        "aws-volume-key-and-startup",
        "aws-dev",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        _set(("productionVariants", 0, "instanceType"), "ml.g5.xlarge"),
    ),
    ("aws-alarm-statistic", "aws-dev", "aws:cloudwatch/metricAlarm:MetricAlarm", _set(("extendedStatistic",), "tm99")),
    ("aws-rollback-alarms-readable", "aws-dev", "aws:iam/rolePolicy:RolePolicy", _drop_token),
    ("aws-model-pull-token", "aws-dev", "aws:iam/rolePolicy:RolePolicy", _drop_token),
    ("aws-log-retention", "aws-dev", "aws:cloudwatch/logGroup:LogGroup", _set(("retentionInDays",), 45)),
    ("azure-probe-limits", "azure-dev", "azure-native:app:ContainerApp", _startup(241)),
    ("azure-probe-failure-safe", "azure-dev", "azure-native:app:ContainerApp", _startup(23)),
    (
        "azure-revision-suffix",
        "azure-dev",
        "azure-native:app:ContainerApp",
        _set(("template", "revisionSuffix"), "d000000000000"),
    ),
    (
        "azure-log-query",
        "azure-dev",
        "azure-native:monitor:ScheduledQueryRule",
        _set(("skipQueryValidation",), _DROP),
    ),
    (
        "azure-log-query",
        "azure-prod",
        "azure-native:monitor:ScheduledQueryRule",
        _set(
            ("criteria", "allOf", 0, "query"),
            'AmlOnlineEndpointConsoleLog | where EndpointName == "kz-iris-azure-prod" | extend d = parse_json(Message)',
        ),
    ),
    (
        "azure-endpoint-diagnostics",
        "azure-prod",
        "azure-native:monitor:DiagnosticSetting",
        _set(
            ("resourceUri",),
            "/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
        ),
    ),
    (
        "azure-managed-deployment",
        "azure-prod",
        "azure-native:machinelearningservices:OnlineDeployment",
        _set(("properties", "scaleSettings"), {"scaleType": "TargetUtilization", "minInstances": 2}),
    ),
    (
        "azure-managed-deployment",
        "azure-prod",
        "azure-native:machinelearningservices:OnlineDeployment",
        _set(("properties", "requestSettings"), _DROP),
    ),
    (
        "azure-metric-aggregation",
        "azure-prod",
        "azure-native:monitor:MetricAlert",
        _set(("criteria", "allOf", 0, "timeAggregation"), "Total"),
    ),
    (
        "azure-endpoint-traffic",
        "azure-prod",
        "azure-native:machinelearningservices:OnlineEndpoint",
        _set(("properties", "traffic"), _DROP),
    ),
    (
        "azure-endpoint-uai-storage",
        "azure-prod",
        "azure-native:authorization:RoleAssignment#endpoint-blob-reader",
        _set(("roleDefinitionId",), "/providers/Microsoft.Authorization/roleDefinitions/7f951dda"),
    ),
    (
        "azure-keyvault-soft-delete",
        "azure-prod",
        "azure-native:keyvault:Vault",
        _set(("properties", "softDeleteRetentionInDays"), 3),
    ),
    (
        "azure-datastore-auth-mode",
        "azure-prod",
        "azure-native:machinelearningservices:Workspace",
        _set(("systemDatastoresAuthMode",), "identity"),
    ),
    (
        "azure-appinsights-retention",
        "azure-dev",
        "azure-native:applicationinsights:Component",
        _set(("retentionInDays",), 30),
    ),
    ("gcp-revision-name", "gcp-dev", "gcp:cloudrunv2/service:Service", _set(("template", "revision"), "svc-abc")),
    (
        "gcp-probe-limits",
        "gcp-dev",
        "gcp:cloudrunv2/service:Service",
        _set(("template", "containers", 0, "startupProbe", "timeoutSeconds"), 10),
    ),
    (
        "gcp-concurrency",
        "gcp-dev",
        "gcp:cloudrunv2/service:Service",
        _set(("template", "maxInstanceRequestConcurrency"), 1001),
    ),
    (
        "gcp-cpu-idle-warm",
        "gcp-prod",
        "gcp:cloudrunv2/service:Service",
        _set(("template", "containers", 0, "resources", "cpuIdle"), True),
    ),
    (
        "gcp-service-agent-pull",
        "gcp-dev",
        "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
        _set(("member",), "serviceAccount:sa@p.iam.gserviceaccount.com"),
    ),
]


@pytest.mark.parametrize(("rule_id", "stack", "typ", "mutate"), BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_rule_catches_a_bad_value(stack_run, rule_id: str, stack: str, typ: str, mutate: Mutation) -> None:
    rule: Rule = RULES[rule_id]
    res = resources(stack_run(stack))
    assert not evaluate(res, [rule]), "precondition: the committed stack passes"
    typ, _, name = typ.partition("#")
    target = next(i for i, r in enumerate(res) if r.typ == typ and (not name or r.name == name))
    props = copy.deepcopy(dict(res[target].props))
    mutate(props)
    res[target] = Res(res[target].typ, res[target].name, props, res[target].urn, res[target].deps)
    assert evaluate(res, [rule]), f"{rule_id} did not catch the change"


def test_log_metric_alert_without_a_wait_is_caught(stack_run) -> None:
    res = [r for r in resources(stack_run("gcp-dev")) if r.typ != "time:index/sleep:Sleep"]
    found = evaluate(res, [RULES["gcp-log-metric-propagation"]])
    assert len(found) == 1 and "DriftAlarms" in json.dumps(found[0].res.props["conditions"])


def test_every_rule_has_a_bad_case() -> None:
    # the Azure retraining job's rules: tests/infra/test_retraining.py (no committed stack declares it)
    covered = {b[0] for b in BAD} | {"gcp-log-metric-propagation", "azure-job-trigger", "azure-custom-role-scope"}
    assert covered == set(RULES)
