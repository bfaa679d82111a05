"""Every cloud and stack kind, run under Pulumi mocks from the real stack files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.common.runtime import aws_vcpus
from infra.common.tags import tag_property
from model_packages.serving import contract as c

from .conftest import ACCOUNT, DIGEST, Run, load_stack_config

AWS_IMAGE = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/kaizen/iris@{DIGEST}"
GCP_IMAGE = f"europe-west4-docker.pkg.dev/kaizen-test/kaizen/kaizen/iris@{DIGEST}"
AZURE_IMAGE = f"kaizenazureplatform.azurecr.io/kaizen/iris@{DIGEST}"
SERVING = ["dev", "staging", "prod", "pr-7"]
ALL = [f"{c}-{k}" for c in ("aws", "azure", "gcp") for k in [*SERVING, "platform"]]
REGISTRY_TYPES = (
    "aws:ecr/repository:Repository",
    "azure-native:containerregistry:Registry",
    "gcp:artifactregistry/repository:Repository",
)


def _statements(doc: Any) -> list[dict[str, Any]]:
    doc = json.loads(doc) if isinstance(doc, str) else doc
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


# --- every stack -------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", ALL)
def test_every_taggable_resource_carries_the_stack_tags(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    assert run.custom, stack
    tagged = 0
    for r in run.custom:
        prop = tag_property(r.typ)
        if prop is None:
            continue
        tags = r.inputs.get(prop) or {}
        assert tags.get("kaizen-stack") == stack, (r.typ, r.name, tags)
        assert tags.get("owner") == "ml-platform" and tags.get("cost-center") == "ml-0001", (r.typ, tags)
        if not stack.endswith("platform"):
            assert tags.get("kaizen-model") == "iris", (r.typ, tags)
            assert tags.get("kaizen-model-version") in ("1.0.0", "1-0-0"), (r.typ, tags)
            assert DIGEST.split(":")[1][:40] in tags.get("kaizen-image-digest", ""), (r.typ, tags)
        tagged += 1
    assert tagged >= 1


def test_core_resources_are_taggable() -> None:
    # guards the type-registry lookup the transform relies on
    for typ in (
        "aws:sagemaker/endpoint:Endpoint",
        "aws:s3/bucket:Bucket",
        "aws:ecr/repository:Repository",
        "azure-native:app:ContainerApp",
        "azure-native:machinelearningservices:OnlineEndpoint",
    ):
        assert tag_property(typ) == "tags", typ
    assert tag_property("gcp:cloudrunv2/service:Service") == "labels"
    assert tag_property("gcp:monitoring/notificationChannel:NotificationChannel") is None  # labels = config
    assert tag_property("aws:iam/rolePolicy:RolePolicy") is None


@pytest.mark.parametrize("stack", [s for s in ALL if not s.endswith("platform")])
def test_serving_stacks_never_declare_a_registry(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    assert not [r for r in run.custom if r.typ in REGISTRY_TYPES]
    refs = [r for r in run.resources if r.typ == "pulumi:pulumi:StackReference"]
    assert [r.inputs["name"] for r in refs] == [f"organization/kaizen/{stack.split('-')[0]}-platform"]


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_platform_stack_declares_the_registry(stack_run, cloud: str) -> None:
    run: Run = stack_run(f"{cloud}-platform")
    assert [r for r in run.custom if r.typ in REGISTRY_TYPES]


# --- AWS ---------------------------------------------------------------------------------------
def test_aws_registry_immutable_scanned_encrypted_with_lifecycle(stack_run) -> None:
    run: Run = stack_run("aws-platform")
    repo = run.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["encryptionConfigurations"][0]["encryptionType"] == "KMS"
    assert repo["encryptionConfigurations"][0]["kmsKey"]
    rules = json.loads(run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs["policy"])["rules"]
    assert rules[0]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30}
    # SageMaker pulls with the execution role (ecr:GetAuthorizationToken + pull actions there).
    assert not run.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")


@pytest.mark.parametrize("stack", ["aws-dev", "aws-staging", "aws-prod", "aws-pr-7"])
def test_aws_endpoint_uses_exactly_the_pinned_image(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    model = run.one("aws:sagemaker/model:Model").inputs
    assert model["primaryContainer"]["image"] == AWS_IMAGE
    # Serverless Inference does not support network isolation.
    assert model["enableNetworkIsolation"] is (stack != "aws-pr-7")
    assert "name" not in model  # auto-named: replace-before-delete on a new digest
    config = run.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    assert "name" not in config
    assert config["productionVariants"][0]["variantName"] == "AllTraffic"
    endpoint_res = run.one("aws:sagemaker/endpoint:Endpoint")
    endpoint = endpoint_res.inputs
    assert endpoint["name"] == f"kaizen-iris-{stack}"
    # serverless <-> instances cannot be converted in place: the mode tag forces a replacement
    mode = "serverless" if stack == "aws-pr-7" else "instance"
    assert endpoint["tags"]["kaizen-endpoint-mode"] == mode
    assert endpoint_res.replace_on_changes == ('tags["kaizen-endpoint-mode"]',)
    assert run.outputs["image"] == AWS_IMAGE


@pytest.mark.parametrize(("stack", "bounds"), [("aws-dev", (1, 2)), ("aws-staging", (1, 3)), ("aws-prod", (2, 6))])
def test_aws_autoscaling_bounds_and_encrypted_capture(stack_run, stack: str, bounds: tuple[int, int]) -> None:
    run: Run = stack_run(stack)
    target = run.one("aws:appautoscaling/target:Target").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == bounds
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["resourceId"] == f"endpoint/kaizen-iris-{stack}/variant/AllTraffic"
    policy = run.one("aws:appautoscaling/policy:Policy").inputs
    spec = policy["targetTrackingScalingPolicyConfiguration"]
    assert spec["predefinedMetricSpecification"]["predefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert spec["targetValue"] == 200
    config = run.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    variant = config["productionVariants"][0]
    assert variant["initialInstanceCount"] == bounds[0]
    capture = config["dataCaptureConfig"]
    assert capture["enableCapture"] is True and capture["initialSamplingPercentage"] == 20
    assert capture["destinationS3Uri"].startswith("s3://") and capture["kmsKeyId"]
    assert config["kmsKeyArn"]
    sse = run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    rule = sse["rules"][0]["applyServerSideEncryptionByDefault"]
    assert rule["sseAlgorithm"] == "aws:kms" and rule["kmsMasterKeyId"]
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )


def test_aws_prod_canary_blue_green_with_rollback_alarms(stack_run) -> None:
    run: Run = stack_run("aws-prod")
    deployment = run.one("aws:sagemaker/endpoint:Endpoint").inputs["deploymentConfig"]
    routing = deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == "CANARY" and routing["canarySize"] == {"type": "CAPACITY_PERCENT", "value": 10}
    names = {a["alarmName"] for a in deployment["autoRollbackConfiguration"]["alarms"]}
    assert names == {"kaizen-iris-aws-prod-latency-p99", "kaizen-iris-aws-prod-errors-5xx"}


def test_aws_preview_is_serverless_without_capture_or_scaling(stack_run) -> None:
    run: Run = stack_run("aws-pr-7")
    config = run.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    variant = config["productionVariants"][0]
    assert variant["serverlessConfig"] == {"memorySizeInMb": 2048, "maxConcurrency": 5}
    assert "instanceType" not in variant
    assert "dataCaptureConfig" not in config
    assert not run.of_type("aws:appautoscaling/target:Target")
    assert not run.of_type("aws:s3/bucket:Bucket")
    bucketless = run.one("aws:cloudwatch/logGroup:LogGroup").inputs
    assert bucketless["retentionInDays"] == 7


@pytest.mark.parametrize("stack", ["aws-dev", "aws-staging", "aws-prod", "aws-pr-7"])
def test_aws_iam_has_no_wildcard(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    docs = [r.inputs["policy"] for r in run.of_type("aws:iam/rolePolicy:RolePolicy")]
    docs += [r.inputs["assumeRolePolicy"] for r in run.of_type("aws:iam/role:Role")]
    assert len(docs) == 2
    allow = [s for d in docs for s in _statements(d) if s["Effect"] == "Allow"]
    from infra.policy.guardrails import _documented_wildcard

    for st in [s for s in allow if not _documented_wildcard(s)]:
        for action in _as_list(st["Action"]):
            assert "*" not in action, st
        for resource in _as_list(st.get("Resource", [])):
            assert resource != "*", st
            # a trailing object/stream suffix inside one named bucket prefix or log group only
            head = resource.removesuffix("/*").removesuffix(":log-stream:*")
            assert "*" not in head, st
    # AWS's confused-deputy template for SageMaker Inference roles (infra/aws/identity.py TRUST_DOC)
    trust = _statements(run.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:*"}},
        }
    ]
    policy = _statements(run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    pull = next(s for s in policy if s["Sid"] == "PullModelImage")
    assert pull["Resource"] == [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/kaizen/iris"]
    logs = next(s for s in policy if s["Sid"] == "EndpointLogs")
    assert (
        logs["Resource"][0]
        == f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/kaizen-iris-{stack}"
    )
    token = next(s for s in policy if s["Sid"] == "EcrAuthToken")
    assert token["Action"] == ["ecr:GetAuthorizationToken"] and token["Resource"] == "*"
    metrics = next(s for s in policy if s["Sid"] == "EndpointMetrics")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}
    alarms = [s for s in policy if s["Sid"] == "ReadRollbackAlarms"]
    if stack == "aws-pr-7":
        assert not alarms  # serverless: no auto-rollback alarms
    else:
        assert alarms[0]["Action"] == ["cloudwatch:DescribeAlarms"]
        assert sorted(a.rsplit(":", 1)[-1] for a in alarms[0]["Resource"]) == [
            f"kaizen-iris-{stack}-errors-5xx",
            f"kaizen-iris-{stack}-latency-p99",
        ]


@pytest.mark.parametrize("stack", ["aws-dev", "aws-prod", "aws-pr-7"])
def test_aws_alarms_latency_errors_saturation_drift_to_topic(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    alarms = {
        r.inputs["name"].rsplit("-", 1)[-1] if "drift" in r.inputs["name"] else r.inputs["name"]: r.inputs
        for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    topic = run.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"].startswith(f"arn:aws:kms:eu-west-1:{ACCOUNT}:monitoring-alarms-key")
    key = next(k for k in run.of_type("aws:kms/key:Key") if k.name == "monitoring-alarms-key")
    principals = [s.get("Principal") for s in _statements(key.inputs["policy"])]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    topic_arn = f"arn:aws:sns:eu-west-1:{ACCOUNT}:{topic.name}-"
    by_metric = {a["metricName"]: a for a in alarms.values()}
    assert set(by_metric) >= {"ModelLatency", "Invocation5XXErrors", "DriftAlarm"}
    assert by_metric["ModelLatency"]["extendedStatistic"] == "p99"
    ms = load_stack_config(stack)["aws"].get("alerts", {}).get("latencyP99Ms", 1000)
    assert by_metric["ModelLatency"]["threshold"] == ms * 1000  # ModelLatency is in microseconds
    drift = by_metric["DriftAlarm"]  # the runtime's calibrated verdict (0/1 per closed window), not a PSI
    assert drift["namespace"] == f"Kaizen/kaizen-iris-{stack}" and drift["threshold"] == 1
    assert drift["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and drift["statistic"] == "Maximum"
    assert drift["period"] == 3600  # one default window (3600 s) per period
    assert "30 days" in drift["alarmDescription"]
    assert any(m in by_metric for m in ("CPUUtilization", "ServerlessConcurrentExecutionsUtilization"))
    if "CPUUtilization" in by_metric:  # a sum over cores: 80 % of every vCPU
        vcpus = aws_vcpus(load_stack_config(stack)["aws"].get("instanceType", "ml.m5.large"))
        assert vcpus and by_metric["CPUUtilization"]["threshold"] == 80 * vcpus
    for alarm in alarms.values():
        assert len(alarm["alarmActions"]) == 1 and alarm["alarmActions"][0].startswith(topic_arn)
    filters = {f.inputs["metricTransformation"]["name"]: f.inputs
               for f in run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")}
    assert set(filters) == {"DriftAlarm", "DriftStatistic"}
    for name, field_name in (("DriftAlarm", c.DRIFT_ALARM_FIELD), ("DriftStatistic", c.DRIFT_STATISTIC_FIELD)):
        flt = filters[name]
        assert flt["logGroupName"] == f"/aws/sagemaker/Endpoints/kaizen-iris-{stack}"
        assert flt["pattern"] == "{ $.event = " + f'"{c.DRIFT_EVENT}"' + " }"
        assert flt["metricTransformation"] == {
            "name": name, "namespace": f"Kaizen/kaizen-iris-{stack}", "value": f"$.{field_name}"}
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] in (7, 30, 365)
    body = json.loads(run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    assert len(body["widgets"]) == 4
    sub = run.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert sub["protocol"] == "email" and sub["endpoint"] == "ml-oncall@example.com"


def test_aws_prod_endpoint_protected_preview_not(stack_run) -> None:
    # protect is a resource option: visible on the endpoint through the config only;
    # the dev/pr capture buckets are force-destroyable, prod's are not.
    assert stack_run("aws-dev").one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is True
    assert stack_run("aws-staging").one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is True
    assert stack_run("aws-prod").one("aws:s3/bucket:Bucket").inputs["forceDestroy"] is False


# --- GCP ---------------------------------------------------------------------------------------
def test_gcp_registry_docker_cleanup(stack_run) -> None:
    repo = stack_run("gcp-platform").one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["format"] == "DOCKER" and repo["dockerConfig"]["immutableTags"] is True
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["keep-recent"]["mostRecentVersions"]["keepCount"] == 30
    assert policies["delete-old"]["action"] == "DELETE"
    assert repo["cleanupPolicyDryRun"] is False


@pytest.mark.parametrize(
    ("stack", "bounds", "protected"),
    [
        ("gcp-dev", (0, 2), False),
        ("gcp-staging", (1, 4), False),
        ("gcp-prod", (2, 10), True),
        ("gcp-pr-7", (0, 1), False),
    ],
)
def test_gcp_cloud_run_service(stack_run, stack: str, bounds: tuple[int, int], protected: bool) -> None:
    run: Run = stack_run(stack)
    svc = run.one("gcp:cloudrunv2/service:Service").inputs
    container = svc["template"]["containers"][0]
    assert container["image"] == GCP_IMAGE
    assert container["ports"]["containerPort"] == c.PORT
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert container["startupProbe"]["httpGet"]["path"] == c.READY_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == c.LIVE_PATH
    scaling = svc["template"]["scaling"]
    assert (scaling["minInstanceCount"], scaling["maxInstanceCount"]) == bounds
    assert svc["template"]["maxInstanceRequestConcurrency"] == 80
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert run.outputs["ingress"] == "internal"  # `kaizen ci smoke-stack` says a hosted runner cannot reach it
    assert svc["deletionProtection"] is protected
    assert svc["invokerIamDisabled"] is False
    sa = run.one("gcp:serviceaccount/account:Account").inputs
    assert svc["template"]["serviceAccount"].startswith(sa["accountId"] + "@")
    # Cloud Run names revisions: a fixed name is rejected (409) once it exists, e.g. on rollback
    assert "revision" not in svc["template"]
    assert container["resources"]["cpuIdle"] is (bounds[0] == 0)  # warm instances keep their timers running
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env[c.ENV_WORKERS] == "1" and int(env[c.ENV_KEEPALIVE_TIMEOUT]) > 600  # GFE keeps 600 s
    assert env[c.ENV_DRIFT_FALSE_ALARM_DAYS] == "30" and env[c.ENV_DRIFT] == "on"  # the calibrated alarm
    assert svc["traffics"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
    invokers = run.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    assert invokers and all(i.inputs["role"] == "roles/run.invoker" for i in invokers)
    assert all(i.inputs["member"] not in ("allUsers", "allAuthenticatedUsers") for i in invokers)
    reader = run.one("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember").inputs
    assert reader["role"] == "roles/artifactregistry.reader" and reader["repository"] == "kaizen"
    # Cloud Run pulls with its service agent (project number from getProject), not the runtime SA
    assert reader["member"] == "serviceAccount:service-123456@serverless-robot-prod.iam.gserviceaccount.com"


@pytest.mark.parametrize("stack", ["gcp-dev", "gcp-prod", "gcp-pr-7"])
def test_gcp_alerts_and_drift_metric(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    svc = f"kaizen-iris-{stack}"
    metric = run.one("gcp:logging/metric:Metric").inputs
    assert metric["name"] == f"Kaizen/{svc}/DriftAlarms"
    # Counts the windows the runtime's calibrated test failed: no PSI threshold anywhere.
    assert f'jsonPayload.event="{c.DRIFT_EVENT}" AND jsonPayload.{c.DRIFT_ALARM_FIELD}=1' in metric["filter"]
    assert "valueExtractor" not in metric
    assert metric["metricDescriptor"]["valueType"] == "INT64" and metric["metricDescriptor"]["metricKind"] == "DELTA"
    channel = run.one("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["labels"] == {"email_address": "ml-oncall@example.com"}
    policies = run.of_type("gcp:monitoring/alertPolicy:AlertPolicy")
    filters = " ".join(c["conditionThreshold"]["filter"] for p in policies for c in p.inputs["conditions"])
    for needle in (
        "request_latencies",
        'response_code_class="5xx"',
        "cpu/utilizations",
        'response_code="429"',
        f"logging.googleapis.com/user/Kaizen/{svc}/DriftAlarms",
    ):
        assert needle in filters, needle
    drift = next(p.inputs for p in policies if "drift" in p.inputs["displayName"])
    condition = drift["conditions"][0]["conditionThreshold"]
    assert condition["thresholdValue"] == 0.0 and condition["comparison"] == "COMPARISON_GT"
    assert condition["aggregations"][0]["perSeriesAligner"] == "ALIGN_SUM" and condition["duration"] == "0s"
    for p in policies:
        assert p.inputs["notificationChannels"] == [
            f"{channel.name}-" + p.inputs["notificationChannels"][0].split("-")[-1]
        ]
    bucket = run.one("gcp:logging/projectBucketConfig:ProjectBucketConfig").inputs
    assert bucket["retentionDays"] in (7, 30, 365)
    assert bucket["bucketId"].startswith(f"kaizen-{svc}-") and len(bucket["bucketId"]) > len(f"kaizen-{svc}-")
    sink = run.one("gcp:logging/projectSink:ProjectSink").inputs
    sleep = run.one("time:index/sleep:Sleep")
    assert sleep.inputs["createDuration"] == "300s" and sleep.urn  # the drift policy waits for the metric
    assert sink["destination"].endswith(f"/buckets/{bucket['bucketId']}")
    assert run.one("gcp:monitoring/dashboard:Dashboard")


# --- Azure -------------------------------------------------------------------------------------
def test_azure_registry_admin_off(stack_run) -> None:
    acr = stack_run("azure-platform").one("azure-native:containerregistry:Registry").inputs
    assert acr["adminUserEnabled"] is False and acr["anonymousPullEnabled"] is False


@pytest.mark.parametrize(
    ("stack", "bounds"), [("azure-dev", (0, 2)), ("azure-staging", (1, 3)), ("azure-pr-7", (0, 1))]
)
def test_azure_container_app(stack_run, stack: str, bounds: tuple[int, int]) -> None:
    run: Run = stack_run(stack)
    app = run.one("azure-native:app:ContainerApp").inputs
    container = app["template"]["containers"][0]
    assert container["image"] == AZURE_IMAGE
    ingress = app["configuration"]["ingress"]
    assert ingress["external"] is False and ingress["targetPort"] == c.PORT and ingress["allowInsecure"] is False
    assert run.outputs["ingress"] == "environment"  # no VNet: only apps of its environment reach it
    scale = app["template"]["scale"]
    assert (scale["minReplicas"], scale["maxReplicas"]) == bounds
    probes = {p["type"]: p["httpGet"]["path"] for p in container["probes"]}
    assert probes == {"Liveness": c.LIVE_PATH, "Readiness": c.READY_PATH, "Startup": c.READY_PATH}
    uai = run.one("azure-native:managedidentity:UserAssignedIdentity")
    assert app["identity"]["type"] == "UserAssigned"
    registry = app["configuration"]["registries"][0]
    assert (
        registry["server"] == "kaizenazureplatform.azurecr.io"
        and registry["identity"] == app["identity"]["userAssignedIdentities"][0]
    )
    assert uai.name in registry["identity"]
    # Azure names revisions (a digest-derived suffix made rollbacks and settings-only changes conflict)
    assert "revisionSuffix" not in app["template"]
    startup = next(p for p in container["probes"] if p["type"] == "Startup")
    assert startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"] >= 240
    # the strictest documented failureThreshold limit (REST spec: 10), the same 4-minute budget
    assert startup["failureThreshold"] <= 10 and startup["periodSeconds"] <= 240
    env = {e["name"]: e for e in container["env"]}
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"] == {
        "name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "secretRef": "appinsights-connection-string",
    }
    assert env[c.ENV_KEEPALIVE_TIMEOUT]["value"] == "255" and env[c.ENV_WORKERS]["value"] == "1"
    assert env[c.ENV_DRIFT_FALSE_ALARM_DAYS]["value"] == "30"
    _azure_identity_and_alerts(run, stack, "containerapp")


def test_azure_ml_endpoint(stack_run) -> None:
    run: Run = stack_run("azure-prod")
    endpoint = run.one("azure-native:machinelearningservices:OnlineEndpoint").inputs
    assert endpoint["properties"]["authMode"] == "AADToken"
    assert endpoint["properties"]["publicNetworkAccess"] == "Enabled"  # authenticated, not anonymous
    assert endpoint["identity"]["type"] == "UserAssigned"
    env = run.one("azure-native:machinelearningservices:EnvironmentVersion").inputs["properties"]
    assert env["image"] == AZURE_IMAGE
    routes = env["inferenceConfig"]
    assert routes["livenessRoute"] == {"path": c.LIVE_PATH, "port": c.PORT}
    assert routes["readinessRoute"] == {"path": c.READY_PATH, "port": c.PORT}
    assert routes["scoringRoute"] == {"path": c.PREDICT_PATH, "port": c.PORT}
    dep = run.one("azure-native:machinelearningservices:OnlineDeployment").inputs
    props = dep["properties"]
    assert props["instanceType"] == "Standard_DS3_v2" and props["endpointComputeType"] == "Managed"
    assert props["scaleSettings"] == {"scaleType": "Default"}  # the only type managed deployments take
    assert dep["sku"]["capacity"] == 2
    assert props["requestSettings"]["maxConcurrentRequestsPerInstance"] == 50  # Azure's default: 1
    assert props["environmentVariables"][c.ENV_WORKERS] == "4"  # Standard_DS3_v2: 4 vCPUs
    assert props["environmentVariables"][c.ENV_DRIFT_WINDOW_SECONDS] == "3600"
    autoscale = run.one("azure-native:monitor:AutoscaleSetting").inputs
    capacity = autoscale["profiles"][0]["capacity"]
    assert (capacity["minimum"], capacity["maximum"]) == ("2", "6")
    assert autoscale["targetResourceUri"].endswith("d000000000000") or autoscale["targetResourceUri"]
    assert endpoint["properties"]["traffic"] == {"d000000000000": 100}
    diagnostics = run.one("azure-native:monitor:DiagnosticSetting").inputs
    assert diagnostics["resourceUri"] == run.outputs["endpointId"]  # the endpoint, not the workspace
    vault = run.one("azure-native:keyvault:Vault").inputs["properties"]
    assert vault["softDeleteRetentionInDays"] == 90 and vault["enablePurgeProtection"] is True
    assert props["environmentVariables"][c.ENV_SCORING_ROUTE] == c.PREDICT_PATH
    assert props["egressPublicNetworkAccess"] == "Enabled"  # pulls from the platform ACR
    assert storage_ok(run)
    storage = run.one("azure-native:storage:StorageAccount").inputs
    assert storage["allowBlobPublicAccess"] is False and storage["enableHttpsTrafficOnly"] is True
    _azure_identity_and_alerts(run, "azure-prod", "ml")


def storage_ok(run: Run) -> bool:
    workspace = run.one("azure-native:machinelearningservices:Workspace").inputs
    vault = run.one("azure-native:keyvault:Vault").inputs["properties"]
    return (
        workspace["systemDatastoresAuthMode"] == "Identity"
        and vault["enableRbacAuthorization"] is True
        and vault["networkAcls"] == {"bypass": "AzureServices", "defaultAction": "Deny"}
    )


def _azure_identity_and_alerts(run: Run, stack: str, compute: str) -> None:
    assignments = {
        a.inputs["roleDefinitionId"].rsplit("/", 1)[-1]: a.inputs
        for a in run.of_type("azure-native:authorization:RoleAssignment")
    }
    if compute == "ml":  # Storage Blob Data Reader for the user-assigned endpoint identity
        reader = assignments.pop("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")
        assert "/storage/" in reader["scope"] and reader["principalType"] == "ServicePrincipal"
    assignment = assignments.pop("7f951dda-4ed3-4680-a7ca-43fe172d538d")
    assert not assignments
    assert assignment["scope"].endswith("/registries/kaizenazureplatform")
    assert assignment["principalType"] == "ServicePrincipal"
    workspace = run.one("azure-native:operationalinsights:Workspace").inputs
    assert workspace["retentionInDays"] in (30, 365)
    assert run.one("azure-native:applicationinsights:Component").inputs["workspaceResourceId"]
    group = run.one("azure-native:monitor:ActionGroup")
    assert group.inputs["emailReceivers"][0]["emailAddress"] == "ml-oncall@example.com"
    alerts = run.of_type("azure-native:monitor:MetricAlert")
    metrics = {a.inputs["criteria"]["allOf"][0]["metricName"] for a in alerts}
    wanted = (
        {"RequestLatency_P99", "RequestsPerMinute"} if compute == "ml" else {"ResponseTime", "Requests", "Replicas"}
    )
    assert metrics == wanted
    rules = {r.name: r.inputs for r in run.of_type("azure-native:monitor:ScheduledQueryRule")}
    drift = rules.pop("alerts-drift")
    if compute == "containerapp":  # a true p99 from the runtime's request log lines
        p99 = rules.pop("alerts-latency-p99-log")["criteria"]["allOf"][0]
        assert "percentile(todouble(d.latency_ms), 99)" in p99["query"] and p99["metricMeasureColumn"] == "P99"
    assert not rules
    condition = drift["criteria"]["allOf"][0]
    assert f'"{c.DRIFT_EVENT}"' in condition["query"] and condition["metricMeasureColumn"] == "DriftAlarm"
    assert f"max(toint(d.{c.DRIFT_ALARM_FIELD}))" in condition["query"] and "drift_score" not in condition["query"]
    assert condition["threshold"] == 0 and condition["operator"] == "GreaterThan"
    for rule in [a.inputs["actions"][0]["actionGroupId"] for a in alerts] + drift["actions"]["actionGroups"]:
        assert rule.endswith(group.name.split("/")[-1]) or group.name in rule
    assert run.one("azure-native:portal:Dashboard")


# --- structure: components, protection ----------------------------------------------------------
TOP_LEVEL = ("pulumi:providers:", "pulumi:pulumi:StackReference", "azure-native:resources:ResourceGroup")


@pytest.mark.parametrize("stack", ALL)
def test_every_resource_is_a_child_of_a_kaizen_component(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    components = {r.urn for r in run.resources if not r.custom}
    assert components and all(u.split("::")[2].split("$")[-1].startswith("kaizen:") for u in components)
    for r in run.custom:
        if r.typ.startswith(TOP_LEVEL):
            continue
        assert r.parent in components, (r.typ, r.name, r.parent)


@pytest.mark.parametrize("stack", ALL)
def test_protection_prod_and_platform_only(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    protected = {r.typ for r in run.resources if r.protect}
    if stack.endswith(("dev", "staging", "pr-7")):
        assert not protected, protected
    elif stack.endswith("platform"):
        assert protected & set(REGISTRY_TYPES)
    else:  # prod: the endpoint survives an accidental `pulumi destroy`
        assert protected & {
            "aws:sagemaker/endpoint:Endpoint",
            "gcp:cloudrunv2/service:Service",
            "azure-native:machinelearningservices:OnlineEndpoint",
        }
