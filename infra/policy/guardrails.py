"""Kaizen guardrails as a CrossGuard policy pack (the same rules the unit tests assert).

Properties are engine names (camelCase). During `pulumi preview` some values are still unknown
(not yet a str/dict): checks skip what they cannot see and run again on `pulumi up`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from model_packages.image.refs import is_digest_ref

from ..aws import monitoring as aws_monitoring
from ..aws.rules import ALLOWED_WILDCARD_RESOURCE_ACTIONS, PIPELINE_PREFIX_RESOURCE, has_instance_storage
from ..azure import monitoring as azure_monitoring
from ..cloud_rules import all_rules
from ..common.config import Alerts
from ..common.rules import Res, evaluate
from ..common.tags import tag_property
from ..gcp import monitoring as gcp_monitoring

REQUIRED_TAGS = ("kaizen-project", "kaizen-stack", "owner", "cost-center")
REGISTRY_TYPES = (
    "aws:ecr/repository:Repository",
    "azure-native:containerregistry:Registry",
    "gcp:artifactregistry/repository:Repository",
)
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::...` -> stack name."""
    parts = urn.split("::")
    return parts[0].removeprefix("urn:pulumi:") if parts else ""


def is_preview_stack(urn: str) -> bool:
    return re.search(r"(^|-)pr-\d+$", stack_of(urn)) is not None


def _get(props: Mapping[str, Any], *path: str | int) -> Any:
    cur: Any = props
    for key in path:
        if isinstance(key, int):
            if not isinstance(cur, list) or len(cur) <= key:
                return None
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
    return cur


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


# --- images -------------------------------------------------------------------------------------
def _images(resource_type: str, props: Mapping[str, Any]) -> Iterable[Any]:
    if resource_type == "aws:sagemaker/model:Model":
        yield _get(props, "primaryContainer", "image")
        for c in _list(props.get("containers")):
            yield _get(c, "image")
    elif resource_type in ("gcp:cloudrunv2/service:Service", "azure-native:app:ContainerApp", "azure-native:app:Job"):
        for c in _list(_get(props, "template", "containers")):
            yield _get(c, "image")
    elif resource_type == "azure-native:machinelearningservices:EnvironmentVersion":
        yield _get(props, "properties", "image")


def validate_image_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for image in _images(args.resource_type, args.props):
        if isinstance(image, str) and not is_digest_ref(image):
            report(f"image {image!r} is not pinned by digest (REGISTRY/PATH@sha256:<64 hex>)", None)


# --- IAM ----------------------------------------------------------------------------------------
def policy_violations(document: Any) -> list[str]:
    """Allow statements with a `*` action, a `*` resource or principal, or a wildcard outside a
    trailing object/stream suffix of a named bucket prefix / log group."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return ["policy is not valid JSON"]
    if not isinstance(document, Mapping):
        return []
    out = []
    for st in _list(document.get("Statement")):
        if not isinstance(st, Mapping) or st.get("Effect") != "Allow":
            continue
        sid = st.get("Sid", "statement")
        if _documented_wildcard(st):
            continue
        if "NotAction" in st or "NotResource" in st:
            out.append(f"{sid}: NotAction/NotResource in an Allow statement")
        for action in _list(st.get("Action")):
            if isinstance(action, str) and "*" in action:
                out.append(f"{sid}: wildcard action {action!r}")
        for resource in _list(st.get("Resource")):
            if not isinstance(resource, str) or PIPELINE_PREFIX_RESOURCE.match(resource):
                continue  # the job-name prefix SageMaker Pipelines imposes (infra/aws/rules.py)
            head = resource.removesuffix("/*").removesuffix(":log-stream:*")
            if resource == "*" or "*" in head:
                out.append(f"{sid}: wildcard resource {resource!r}")
        principal = st.get("Principal")
        if principal == "*" or (isinstance(principal, Mapping) and "*" in _list(principal.get("AWS"))):
            out.append(f"{sid}: wildcard principal")
    return out


def _documented_wildcard(st: Mapping[str, Any]) -> bool:
    """One action AWS accepts only on `*` (ecr:GetAuthorizationToken; cloudwatch:PutMetricData with
    its namespace condition), alone in its statement, with no principal (infra/aws/rules.py)."""
    actions = _list(st.get("Action"))
    if len(actions) != 1 or actions[0] not in ALLOWED_WILDCARD_RESOURCE_ACTIONS or "Principal" in st:
        return False
    if _list(st.get("Resource")) != ["*"]:
        return False
    needed = ALLOWED_WILDCARD_RESOURCE_ACTIONS[actions[0]]
    if needed is None:
        return True
    conditions = st.get("Condition")
    return isinstance(conditions, Mapping) and any(isinstance(c, Mapping) and needed in c for c in conditions.values())


_POLICY_PROPS = {
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/role:Role": ("assumeRolePolicy",),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy",),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
    "aws:sns/topicPolicy:TopicPolicy": ("policy",),
}


# The deploy role the platform stack creates for GitHub Actions runs `pulumi up` itself, so it is
# scoped by name prefix (`endpoint/kaizen-*`) and holds the List/Describe calls AWS only authorizes
# on "*". tests/infra/test_deploy_roles.py checks its exact shape instead.
DEPLOY_TRUST = "kaizen:aws:GithubDeployTrust$"


def validate_no_wildcard_iam(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:iam/rolePolicy:RolePolicy" and DEPLOY_TRUST in args.urn:
        return
    for prop in _POLICY_PROPS.get(args.resource_type, ()):
        for problem in policy_violations(args.props.get(prop)):
            report(f"{prop}: {problem}", None)
    if args.resource_type == "aws:iam/role:Role":
        for inline in _list(args.props.get("inlinePolicies")):
            for problem in policy_violations(_get(inline, "policy")):
                report(f"inlinePolicies: {problem}", None)
    if args.resource_type in ("gcp:projects/iAMMember:IAMMember", "gcp:projects/iAMBinding:IAMBinding"):
        role = args.props.get("role")
        if isinstance(role, str) and role in ("roles/owner", "roles/editor"):
            report(f"primitive role {role} granted", None)


# --- encryption ---------------------------------------------------------------------------------
def validate_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p, t = args.props, args.resource_type
    if t == "aws:ecr/repository:Repository":
        enc = _list(p.get("encryptionConfigurations"))
        if not enc or _get(enc[0], "encryptionType") != "KMS":
            report("ECR repository must use KMS encryption", None)
        if p.get("imageTagMutability") != "IMMUTABLE":
            report("ECR repository tags must be IMMUTABLE", None)
        if _get(p, "imageScanningConfiguration", "scanOnPush") is not True:
            report("ECR repository must scan on push", None)
    elif t == "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        capture = p.get("dataCaptureConfig")
        if isinstance(capture, Mapping) and capture.get("enableCapture") and not capture.get("kmsKeyId"):
            report("data capture must be encrypted with a KMS key (kmsKeyId)", None)
        variants = _list(p.get("productionVariants"))
        # Instance types with local NVMe storage refuse a volume key (infra/aws/rules.py).
        instance_backed = any(
            isinstance(v, Mapping)
            and not v.get("serverlessConfig")
            and not (isinstance(v.get("instanceType"), str) and has_instance_storage(v["instanceType"]))
            for v in variants
        )
        if instance_backed and "kmsKeyArn" in p and p.get("kmsKeyArn") is None:
            report("instance-backed endpoint volumes must be KMS-encrypted (kmsKeyArn)", None)
        if instance_backed and "kmsKeyArn" not in p:
            report("instance-backed endpoint volumes must be KMS-encrypted (kmsKeyArn)", None)
    elif t == "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        algo = _get(p, "rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if isinstance(algo, str) and algo not in ("aws:kms", "aws:kms:dsse"):
            report(f"S3 encryption must be SSE-KMS, not {algo}", None)
    elif t == "azure-native:storage:StorageAccount" and p.get("enableHttpsTrafficOnly") is False:
        report("storage account must accept HTTPS only", None)
    elif t == "aws:sns/topic:Topic" and not p.get("kmsMasterKeyId"):
        report("SNS topic must be encrypted with a customer-managed KMS key (kmsMasterKeyId)", None)
    elif t == "gcp:pubsub/topic:Topic" and "kmsKeyName" in p and not p.get("kmsKeyName"):
        report("Pub/Sub topic must name its KMS key (kmsKeyName)", None)


# --- public access -------------------------------------------------------------------------------
def validate_no_public_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p, t = args.props, args.resource_type
    allow_public = bool(args.get_config().get("allowPublic", False))
    if t == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            if p.get(key) is not True:
                report(f"S3 public access block: {key} must be true", None)
    elif t == "azure-native:containerregistry:Registry":
        if p.get("adminUserEnabled") is not False:
            report("container registry admin user must be disabled", None)
        if p.get("anonymousPullEnabled") is True:
            report("container registry anonymous pull must be disabled", None)
    elif t == "azure-native:storage:StorageAccount" and p.get("allowBlobPublicAccess") is not False:
        report("storage account must disallow public blob access", None)
    elif allow_public:
        return
    elif t in (
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
    ):
        members = _list(p.get("member")) + _list(p.get("members"))
        if any(m in PUBLIC_MEMBERS for m in members):
            report("Cloud Run invoker granted to the public", None)
    elif t == "gcp:cloudrunv2/service:Service" and p.get("ingress") in (None, "INGRESS_TRAFFIC_ALL"):
        report("Cloud Run ingress must be internal (set public access only by explicit config)", None)
    elif t == "azure-native:app:ContainerApp" and _get(p, "configuration", "ingress", "external") is True:
        report("Container App ingress must be internal (external: false)", None)
    elif (
        t == "azure-native:machinelearningservices:OnlineEndpoint"
        and _get(p, "properties", "publicNetworkAccess") != "Disabled"
        and _get(p, "properties", "authMode") != "AADToken"
    ):
        report("Azure ML endpoint reachable publicly must require Entra ID tokens (authMode AADToken)", None)


# --- logs, scaling, tags -------------------------------------------------------------------------
def validate_log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    p, t = args.props, args.resource_type
    key = {
        "aws:cloudwatch/logGroup:LogGroup": "retentionInDays",
        "azure-native:operationalinsights:Workspace": "retentionInDays",
        "gcp:logging/projectBucketConfig:ProjectBucketConfig": "retentionDays",
    }.get(t)
    if key is not None and not p.get(key):
        report(f"log retention must be explicit ({key})", None)


def validate_autoscaling(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:appautoscaling/target:Target":
        return
    low, high = args.props.get("minCapacity"), args.props.get("maxCapacity")
    limit = int(args.get_config().get("maxInstances", 20))
    if isinstance(low, int | float) and isinstance(high, int | float):
        if low < 1 or low > high:
            report(f"autoscaling bounds invalid: min {low}, max {high}", None)
        if high > limit:
            report(f"autoscaling max {high} above the allowed {limit}", None)


def validate_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    prop = tag_property(args.resource_type)
    if prop is None:
        return
    tags = args.props.get(prop)
    if tags is not None and not isinstance(tags, Mapping):
        return  # unknown during preview
    missing = [k for k in REQUIRED_TAGS if k not in (tags or {})]
    if missing:
        report(f"missing {prop}: {', '.join(missing)}", None)


# --- stack-wide ----------------------------------------------------------------------------------
def validate_preview_stack(args: StackValidationArgs, report: ReportViolation) -> None:
    for r in args.resources:
        if not is_preview_stack(r.urn):
            return
        if r.resource_type in REGISTRY_TYPES:
            report("preview stacks must not own a registry (read it from the platform stack)", r.urn)
        if r.opts.protect:
            report("preview stacks must not protect resources", r.urn)
        # Deletion protection of any kind blocks `pulumi destroy` of a preview.
        t, p = r.resource_type, r.props
        if t == "gcp:cloudrunv2/service:Service" and p.get("deletionProtection") is not False:
            report("preview Cloud Run services must set deletionProtection false (provider default: true)", r.urn)
        if t == "aws:s3/bucket:Bucket" and p.get("forceDestroy") is not True:
            report("preview S3 buckets must be force-destroyable (forceDestroy true)", r.urn)
        if t == "aws:ecr/repository:Repository" and p.get("forceDelete") is not True:
            report("preview ECR repositories must be force-deletable", r.urn)
        if t == "azure-native:keyvault:Vault" and _get(p, "properties", "enablePurgeProtection") is True:
            report("preview Key Vaults must not enable purge protection (the name stays reserved)", r.urn)


def _bucket_encryption(args: StackValidationArgs) -> list[str]:
    """Every S3 bucket has a KMS server-side encryption configuration of its own."""
    buckets = [r for r in args.resources if r.resource_type == "aws:s3/bucket:Bucket"]
    sse = [
        r
        for r in args.resources
        if r.resource_type == "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        and _get(r.props, "rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        in ("aws:kms", "aws:kms:dsse")
    ]
    targets = {json.dumps(r.props.get("bucket"), default=str) for r in sse}
    if len(buckets) > len(targets):
        return [f"{len(buckets) - len(targets)} S3 bucket(s) without a KMS server-side encryption configuration"]
    return []


def validate_bucket_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    for problem in _bucket_encryption(args):
        report(problem, None)


def _alarm_targets(args: StackValidationArgs) -> list[str]:
    problems: list[str] = []
    types = {r.resource_type for r in args.resources}
    if "aws:sagemaker/endpoint:Endpoint" in types:
        alarms = [r for r in args.resources if r.resource_type == "aws:cloudwatch/metricAlarm:MetricAlarm"]
        metrics = {r.props.get("metricName") for r in alarms}
        for needed in aws_monitoring.REQUIRED_METRICS:  # the metrics of the alarm table (infra/aws/monitoring.py)
            if needed not in metrics:
                problems.append(f"SageMaker endpoint without a {needed} alarm")
        problems += [f"alarm {r.name} notifies nobody" for r in alarms if not r.props.get("alarmActions")]
    if "gcp:cloudrunv2/service:Service" in types:
        policies = [r for r in args.resources if r.resource_type == "gcp:monitoring/alertPolicy:AlertPolicy"]
        text = " ".join(str(_get(c, "conditionThreshold", "filter")) for r in policies
                        for c in _list(r.props.get("conditions")))
        for needed in gcp_monitoring.REQUIRED_METRICS:  # the policy table's metrics (infra/gcp/monitoring.py)
            if needed not in text:
                problems.append(f"Cloud Run service without a {needed} alert policy")
        problems += [
            f"alert policy {r.name} notifies nobody" for r in policies if not r.props.get("notificationChannels")
        ]
    if types & {"azure-native:app:ContainerApp", "azure-native:machinelearningservices:OnlineEndpoint"}:
        alerts = [r for r in args.resources if r.resource_type == "azure-native:monitor:MetricAlert"]
        drift = [r for r in args.resources if r.resource_type == "azure-native:monitor:ScheduledQueryRule"]
        # The metric alert table (infra/azure/monitoring.py): the same criteria names on either compute.
        needed = [spec.key for spec in azure_monitoring.metric_alert_specs("containerapp", Alerts(), 1)]
        names = {_get(r.props, "criteria", "allOf", 0, "name") for r in alerts}
        missing = [key for key in needed if key not in names]
        if missing:
            problems.append(f"Azure endpoint without {'/'.join(missing)} metric alerts")
        column = azure_monitoring.DRIFT_COLUMN
        if not any(_get(r.props, "criteria", "allOf", 0, "metricMeasureColumn") == column for r in drift):
            problems.append("Azure endpoint without a drift query alert")
        problems += [f"alert {r.name} notifies nobody" for r in alerts if not r.props.get("actions")]
    return problems


def validate_alarms(args: StackValidationArgs, report: ReportViolation) -> None:
    for problem in _alarm_targets(args):
        report(problem, None)


# --- the clouds' documented rules (infra/<cloud>/rules.py) ---------------------------------------
def _cloud_violations(args: StackValidationArgs, advisory: bool) -> list[tuple[str, str]]:
    resources = [
        Res(r.resource_type, r.name, r.props, r.urn, tuple(d.urn for d in (r.dependencies or [])))
        for r in args.resources
    ]
    return [(str(v), v.res.urn) for v in evaluate(resources, all_rules()) if v.rule.advisory is advisory]


def validate_cloud_rules(args: StackValidationArgs, report: ReportViolation) -> None:
    for message, urn in _cloud_violations(args, advisory=False):
        report(message, urn)


def validate_cloud_rules_advisory(args: StackValidationArgs, report: ReportViolation) -> None:
    for message, urn in _cloud_violations(args, advisory=True):
        report(message, urn)


Validation = Callable[[ResourceValidationArgs, ReportViolation], None]

POLICIES: list[Policy] = [
    ResourceValidationPolicy("image-pinned-by-digest", "Model images are referenced by digest.", validate_image_digest),
    ResourceValidationPolicy(
        "no-wildcard-iam", "No wildcard action/resource/principal in Allow.", validate_no_wildcard_iam
    ),
    ResourceValidationPolicy(
        "encryption-at-rest", "Registries, captured data and volumes are encrypted.", validate_encryption
    ),
    ResourceValidationPolicy(
        "no-public-access", "Endpoints and storage are private unless configured.", validate_no_public_access
    ),
    ResourceValidationPolicy("explicit-log-retention", "Log retention is set explicitly.", validate_log_retention),
    ResourceValidationPolicy("autoscaling-bounds", "Autoscaling bounds are sane and capped.", validate_autoscaling),
    ResourceValidationPolicy("required-tags", "Taggable resources carry the Kaizen tags.", validate_tags),
    StackValidationPolicy(
        "preview-stacks-disposable",
        "Preview stacks own no registry, protect nothing, have deletion protection off.",
        validate_preview_stack,
    ),
    StackValidationPolicy(
        "buckets-encrypted", "Every S3 bucket has a KMS encryption configuration.", validate_bucket_encryption
    ),
    StackValidationPolicy(
        "cloud-rules",
        "Ranges, enums and exclusions the clouds document (infra/<cloud>/rules.py).",
        validate_cloud_rules,
    ),
    StackValidationPolicy(
        "cloud-rules-advisory",
        "Documented behaviour worth a look (infra/<cloud>/rules.py, advisory rules).",
        validate_cloud_rules_advisory,
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
    StackValidationPolicy("endpoint-alarms", "Endpoints alert on latency, errors and drift.", validate_alarms),
]

ENFORCEMENT = EnforcementLevel.MANDATORY
