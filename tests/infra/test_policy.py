"""The CrossGuard pack: every stack program passes it; each guardrail catches a violation."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy.guardrails import POLICIES, policy_violations
from tests.support import ROOT

from .conftest import Recorded, Run
from .test_stacks import ALL

BY_NAME = {p.name: p for p in POLICIES}


def _opts(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _urn(stack: str, typ: str, name: str) -> str:
    return f"urn:pulumi:{stack}::kaizen::{typ}::{name}"


def check_resource(
    policy_name: str, typ: str, props: dict[str, Any], stack: str = "aws-dev", config: dict[str, Any] | None = None
) -> list[str]:
    policy = BY_NAME[policy_name]
    assert isinstance(policy, ResourceValidationPolicy)
    found: list[str] = []
    args = ResourceValidationArgs(typ, props, _urn(stack, typ, "r"), "r", _opts(), None, config)
    policy.validate(args, lambda msg, urn=None: found.append(msg))
    return found


def _policy_resources(run: Run) -> list[PolicyResource]:
    out = [
        PolicyResource(
            r.typ, r.inputs, r.urn or _urn(run.stack, r.typ, r.name), r.name, _opts(r.protect), None, None, [], {}
        )
        for r in run.custom
    ]
    by_urn = {p.urn: p for p in out}
    for p, r in zip(out, run.custom, strict=True):
        p.dependencies = [by_urn[u] for u in r.deps if u in by_urn]
    return out


def violations(run: Run, resources: list[Recorded] | None = None) -> list[str]:
    found: list[str] = []
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources if resources is not None else run.custom:
                args = ResourceValidationArgs(r.typ, r.inputs, r.urn, r.name, _opts(r.protect), None, None)
                policy.validate(args, lambda msg, urn=None, p=policy, r=r: found.append(f"{p.name} {r.typ}: {msg}"))
        elif isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs(_policy_resources(run), None)
            policy.validate(args, lambda msg, urn=None, p=policy: found.append(f"{p.name}: {msg}"))
    return found


@pytest.mark.parametrize("stack", ALL)
def test_every_stack_passes_the_pack(stack_run, stack: str) -> None:
    assert violations(stack_run(stack)) == []


def test_tag_transform_is_what_satisfies_required_tags(stack_run) -> None:
    run: Run = stack_run("aws-dev")
    untagged = []
    for r in run.custom:
        inputs = dict(r.inputs)
        inputs.pop("tags", None)
        untagged.append(Recorded(r.typ, r.name, inputs, r.custom, r.provider, r.protect, r.urn, r.parent))
    found = [v for v in violations(run, untagged) if v.startswith("required-tags")]
    assert any("aws:sagemaker/endpoint:Endpoint" in v for v in found)


def test_image_by_tag_is_flagged() -> None:
    props = {"primaryContainer": {"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris:latest"}}
    assert check_resource("image-pinned-by-digest", "aws:sagemaker/model:Model", props)
    props = {"template": {"containers": [{"image": "europe-west4-docker.pkg.dev/p/r/iris:1"}]}}
    assert check_resource("image-pinned-by-digest", "gcp:cloudrunv2/service:Service", props)
    ok = {"primaryContainer": {"image": "r.example.com/kaizen/iris@sha256:" + "a" * 64}}
    assert not check_resource("image-pinned-by-digest", "aws:sagemaker/model:Model", ok)


@pytest.mark.parametrize(
    ("statement", "bad"),
    [
        ({"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:eu-west-1:1:repository/x"}, True),
        # documented: no resource-level permissions (infra/aws/rules.py), alone in its statement
        ({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}, False),
        ({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage"], "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*"}, True),
        (
            {
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            },
            False,
        ),
        ({"Effect": "Allow", "Action": ["cloudwatch:DescribeAlarms"], "Resource": "*"}, True),
        ({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::*/datacapture/*"]}, True),
        ({"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/p/*"]}, True),
        ({"Effect": "Allow", "NotAction": ["iam:*"], "Resource": ["arn:aws:s3:::b"]}, True),
        ({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::b/datacapture/*"]}, False),
        (
            {
                "Effect": "Allow",
                "Action": ["logs:PutLogEvents"],
                "Resource": ["arn:aws:logs:r:1:log-group:/aws/sagemaker/Endpoints/e:log-stream:*"],
            },
            False,
        ),
        ({"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}, False),
    ],
)
def test_wildcards_in_allow_statements(statement: dict[str, Any], bad: bool) -> None:
    doc = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    assert bool(policy_violations(doc)) is bad
    assert bool(check_resource("no-wildcard-iam", "aws:iam/rolePolicy:RolePolicy", {"policy": doc})) is bad


def test_execution_policy_passes_with_only_the_documented_wildcards() -> None:
    from infra.aws.identity import execution_policy

    doc = execution_policy(
        "arn:aws:ecr:r:1:repository/kaizen/iris", "arn:aws:logs:r:1:log-group:g", None, None, ["arn:aws:cw:a"]
    )
    assert policy_violations(doc) == []
    star = [s["Action"] for s in doc["Statement"] if s["Resource"] == "*"]
    assert sorted(star) == [["cloudwatch:PutMetricData"], ["ecr:GetAuthorizationToken"]]


def test_encryption_and_public_access(stack_run) -> None:
    run: Run = stack_run("aws-dev")
    config = copy.deepcopy(run.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs)
    config["dataCaptureConfig"].pop("kmsKeyId")
    typ = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
    assert check_resource("encryption-at-rest", typ, config)
    config.pop("kmsKeyArn")
    assert len(check_resource("encryption-at-rest", typ, config)) == 2
    repo = {"imageTagMutability": "MUTABLE", "encryptionConfigurations": [{"encryptionType": "AES256"}]}
    assert len(check_resource("encryption-at-rest", "aws:ecr/repository:Repository", repo)) == 3
    block = {
        "blockPublicAcls": True,
        "blockPublicPolicy": False,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert check_resource("no-public-access", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", block)
    member = {"role": "roles/run.invoker", "member": "allUsers"}
    typ = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    assert check_resource("no-public-access", typ, member)
    assert not check_resource("no-public-access", typ, member, config={"allowPublic": True})
    assert check_resource("no-public-access", "gcp:cloudrunv2/service:Service", {"ingress": "INGRESS_TRAFFIC_ALL"})
    app = {"configuration": {"ingress": {"external": True}}}
    assert check_resource("no-public-access", "azure-native:app:ContainerApp", app)
    typ = "azure-native:machinelearningservices:OnlineEndpoint"
    assert check_resource(
        "no-public-access", typ, {"properties": {"authMode": "Key", "publicNetworkAccess": "Enabled"}}
    )
    assert not check_resource("no-public-access", typ, {"properties": {"authMode": "AADToken"}})
    acr = {"adminUserEnabled": True}
    assert check_resource("no-public-access", "azure-native:containerregistry:Registry", acr)


def test_log_retention_and_autoscaling() -> None:
    assert check_resource("explicit-log-retention", "aws:cloudwatch/logGroup:LogGroup", {"name": "g"})
    assert not check_resource("explicit-log-retention", "aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 30})
    typ = "aws:appautoscaling/target:Target"
    assert check_resource("autoscaling-bounds", typ, {"minCapacity": 3, "maxCapacity": 2})
    assert check_resource("autoscaling-bounds", typ, {"minCapacity": 1, "maxCapacity": 50})
    assert not check_resource(
        "autoscaling-bounds", typ, {"minCapacity": 1, "maxCapacity": 50}, config={"maxInstances": 64}
    )


def test_preview_stack_with_registry_or_protection_is_flagged(stack_run) -> None:
    run: Run = stack_run("gcp-pr-7")
    resources = _policy_resources(run)
    resources.append(
        PolicyResource(
            "gcp:artifactregistry/repository:Repository",
            {},
            _urn("gcp-pr-7", "x", "repo"),
            "repo",
            _opts(protect=True),
            None,
            None,
            [],
            {},
        )
    )
    found: list[str] = []
    policy = BY_NAME["preview-stacks-disposable"]
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(resources, None), lambda msg, urn=None: found.append(msg))
    assert any("registry" in f for f in found) and any("protect" in f for f in found)


ALARM_TYPES = ("aws:cloudwatch/metricAlarm:MetricAlarm", "gcp:monitoring/alertPolicy:AlertPolicy")


def _alarm_problems(run: Run, types: tuple[str, ...], dropped: Callable[[str], bool]) -> list[str]:
    """What endpoint-alarms reports on the stack without the alarms of `types` whose name is `dropped`."""
    kept = [r for r in _policy_resources(run) if not (r.resource_type in types and dropped(r.name))]
    found: list[str] = []
    policy = BY_NAME["endpoint-alarms"]
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(kept, None), lambda msg, urn=None: found.append(msg))
    return found


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev", "azure-dev"])
def test_missing_drift_alarm_is_flagged(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    assert _alarm_problems(run, ALARM_TYPES, lambda name: False) == []  # the whole stack passes
    found = _alarm_problems(run, (*ALARM_TYPES, "azure-native:monitor:ScheduledQueryRule"), lambda n: "drift" in n)
    assert found and all("rift" in f for f in found), (stack, found)


@pytest.mark.parametrize("stack", ["aws-dev", "gcp-dev", "azure-dev", "azure-prod"])
def test_missing_latency_alarm_is_flagged(stack_run, stack: str) -> None:
    found = _alarm_problems(stack_run(stack), (*ALARM_TYPES, "azure-native:monitor:MetricAlert"),
                            lambda name: name.endswith("latency-p99"))
    assert len(found) == 1 and ("atency" in found[0] or "request_latencies" in found[0]), (stack, found)


def test_pack_module_builds_a_policy_pack() -> None:
    # __main__ starts the analyzer gRPC server the CLI talks to: run it, read its port, stop it.
    proc = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"],
        cwd=ROOT / "infra" / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.isdigit() and int(line) > 0, proc.stderr.read().decode() if proc.stderr else line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _stack_policy(name: str, resources: list[PolicyResource]) -> list[str]:
    policy = BY_NAME[name]
    assert isinstance(policy, StackValidationPolicy)
    found: list[str] = []
    policy.validate(StackValidationArgs(resources, None), lambda msg, urn=None: found.append(msg))
    return found


def test_unencrypted_topic_is_flagged(stack_run) -> None:
    topic = stack_run("aws-dev").one("aws:sns/topic:Topic").inputs
    assert not check_resource("encryption-at-rest", "aws:sns/topic:Topic", topic)
    bare = {k: v for k, v in topic.items() if k != "kmsMasterKeyId"}
    assert check_resource("encryption-at-rest", "aws:sns/topic:Topic", bare)


def test_bucket_without_kms_encryption_is_flagged(stack_run) -> None:
    resources = _policy_resources(stack_run("aws-dev"))
    assert not _stack_policy("buckets-encrypted", resources)
    sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    assert _stack_policy("buckets-encrypted", [r for r in resources if r.resource_type != sse])


@pytest.mark.parametrize(
    ("stack", "typ", "change"),
    [
        ("gcp-pr-7", "gcp:cloudrunv2/service:Service", {"deletionProtection": None}),  # provider default: true
        ("aws-pr-7", "aws:sns/topic:Topic", {}),  # control: nothing to flag
    ],
)
def test_preview_deletion_protection_is_flagged(stack_run, stack: str, typ: str, change: dict[str, Any]) -> None:
    resources = _policy_resources(stack_run(stack))
    assert not _stack_policy("preview-stacks-disposable", resources)
    for r in resources:
        if r.resource_type == typ:
            r.props = {**r.props, **change}
    found = _stack_policy("preview-stacks-disposable", resources)
    assert bool(found) is bool(change)


def test_preview_bucket_must_be_force_destroyable() -> None:
    bucket = PolicyResource(
        "aws:s3/bucket:Bucket", {"forceDestroy": False}, _urn("aws-pr-9", "b", "b"), "b", _opts(), None, None, [], {}
    )
    assert any("forceDestroy" in f for f in _stack_policy("preview-stacks-disposable", [bucket]))


def test_cloud_rules_are_enforced_by_the_pack(stack_run) -> None:
    resources = _policy_resources(stack_run("azure-dev"))
    for r in resources:
        if r.resource_type == "azure-native:monitor:ScheduledQueryRule":
            r.props = {**r.props, "skipQueryValidation": False}
    assert any("azure-log-query" in f for f in _stack_policy("cloud-rules", resources))
