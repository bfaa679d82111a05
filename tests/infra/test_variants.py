"""Stack variants set by config: canary traffic, blue/green, notification targets, local dispatch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.common.config import parse_config
from model_packages.serving import contract as c

from .conftest import ACCOUNT, load_stack_config, run_program

OTHER_DIGEST = "sha256:" + "b" * 64


def _with(stack: str, **changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(load_stack_config(stack))
    cloud = stack.split("-")[0]
    for key, value in changes.items():
        if key in ("image",):
            cfg[key] = value
        else:
            cfg[cloud][key] = value
    return cfg


def test_gcp_canary_splits_traffic_between_latest_and_stable() -> None:
    run = run_program("gcp-prod", _with("gcp-prod", canaryPercent=10, stableRevision="kaizen-iris-gcp-prod-0123456789"))
    svc = run.one("gcp:cloudrunv2/service:Service").inputs
    assert svc["traffics"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 10},
        {
            "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
            "revision": "kaizen-iris-gcp-prod-0123456789",
            "percent": 90,
        },
    ]


def test_gcp_new_digest_is_a_new_revision() -> None:
    base = run_program("gcp-dev").one("gcp:cloudrunv2/service:Service").inputs
    image = load_stack_config("gcp-dev")["image"].split("@")[0] + "@" + OTHER_DIGEST
    moved = run_program("gcp-dev", _with("gcp-dev", image=image)).one("gcp:cloudrunv2/service:Service").inputs
    assert moved["template"]["containers"][0]["image"] == image
    assert moved["template"] != base["template"]  # any template change is a new (Cloud Run-named) revision
    assert moved["name"] == base["name"]  # same service: Cloud Run shifts traffic to the new revision


def test_azure_container_app_canary() -> None:
    cfg = _with("azure-staging", canaryPercent=20, stableRevision="kaizen-iris-azure-staging--d000000000000")
    app = run_program("azure-staging", cfg).one("azure-native:app:ContainerApp").inputs
    assert app["configuration"]["activeRevisionsMode"] == "Multiple"
    canary, stable = app["configuration"]["ingress"]["traffic"]
    assert (canary["latestRevision"], canary["weight"], canary["label"]) == (True, 20, "canary")
    assert (stable["revisionName"], stable["weight"], stable["label"]) == (
        "kaizen-iris-azure-staging--d000000000000",
        80,
        "stable",
    )
    assert not stable.get("latestRevision")


def test_azure_ml_blue_green_keeps_previous_deployment_and_splits_traffic() -> None:
    previous = load_stack_config("azure-prod")["image"].split("@")[0] + "@" + OTHER_DIGEST
    cfg = _with("azure-prod", previousImage=previous, mlTraffic={"d000000000000": 10, "dbbbbbbbbbbbb": 90})
    run = run_program("azure-prod", cfg)
    deployments = {
        d.inputs["deploymentName"] for d in run.of_type("azure-native:machinelearningservices:OnlineDeployment")
    }
    assert deployments == {"d000000000000", "dbbbbbbbbbbbb"}
    endpoint = run.one("azure-native:machinelearningservices:OnlineEndpoint").inputs
    assert endpoint["properties"]["traffic"] == {"d000000000000": 10, "dbbbbbbbbbbbb": 90}
    images = {
        e.inputs["properties"]["image"] for e in run.of_type("azure-native:machinelearningservices:EnvironmentVersion")
    }
    assert previous in images and len(images) == 2


def test_aws_existing_topic() -> None:
    topic = f"arn:aws:sns:eu-west-1:{ACCOUNT}:ml-oncall"
    run = run_program("aws-dev", _with("aws-dev", notifications={"topicArn": topic}))
    assert not run.of_type("aws:sns/topic:Topic")
    for alarm in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        assert alarm.inputs["alarmActions"] == [topic]


def test_aws_autoscaling_switch_for_instance_type_changes() -> None:
    run = run_program("aws-dev", _with("aws-dev", autoscaling=False, instanceType="ml.g5.xlarge"))
    assert not run.of_type("aws:appautoscaling/target:Target")
    config = run.one("aws:sagemaker/endpointConfiguration:EndpointConfiguration").inputs
    assert config["productionVariants"][0]["instanceType"] == "ml.g5.xlarge"
    assert "kmsKeyArn" not in config  # local NVMe: CreateEndpointConfig refuses a volume key
    env = run.one("aws:sagemaker/model:Model").inputs["primaryContainer"]["environment"]
    assert env[c.ENV_WORKERS] == "4"


def test_aws_image_outside_the_platform_repository_is_refused() -> None:
    cfg = _with("aws-dev", image=f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/kaizen/other@{OTHER_DIGEST}")
    with pytest.raises(Exception, match=r"kaizen:image: .* is not in the platform stack's registry"):
        run_program("aws-dev", cfg)


def test_local_target_is_dispatched_to_infra_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import infra.local.stack
    from infra import program

    raw = {"target": "local", "stackKind": "dev", "owner": "ml-platform", "costCenter": "ml-0001"}
    cfg = parse_config(raw, "local")
    seen = []
    monkeypatch.setattr(infra.local.stack, "deploy", lambda c: seen.append(c) or {"endpointUrl": "u"})
    assert program.deploy(cfg) == {"endpointUrl": "u"}
    assert seen == [cfg]
    assert set(program.TARGETS) == {"aws", "azure", "gcp", "local"}


def test_azure_ml_stack_without_traffic_or_with_unknown_deployment_is_refused() -> None:
    cfg = load_stack_config("azure-prod")
    del cfg["azure"]["mlTraffic"]
    with pytest.raises(Exception, match=r"kaizen:azure\.mlTraffic: missing: the endpoint would route 0 %"):
        parse_config(cfg, "azure-prod")
    cfg["azure"]["mlTraffic"] = {"dffffffffffff": 100}
    with pytest.raises(Exception, match=r"not a deployment of this stack \['d000000000000'\]"):
        parse_config(cfg, "azure-prod")
    cfg["azure"]["mlTraffic"] = {}  # the very first deploy: deliberately no traffic yet
    assert parse_config(cfg, "azure-prod").azure is not None


def test_azure_name_suffix_renames_the_globally_unique_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import conftest

    plain = run_program("azure-prod")  # the committed stack, without a suffix
    plain_endpoint = plain.one("azure-native:machinelearningservices:OnlineEndpoint").inputs["endpointName"]
    platform_cfg = _with("azure-platform", nameSuffix="ab12")
    platform = run_program("azure-platform", platform_cfg)
    login = platform.outputs["loginServer"]
    assert login == "kaizenazureplatformab12.azurecr.io"
    assert platform.one("azure-native:containerregistry:Registry").inputs["registryName"] == "kaizenazureplatformab12"
    # the serving stack reads that platform stack's outputs and must pull from its registry
    monkeypatch.setattr(conftest, "platform_outputs", lambda: {"organization/kaizen/azure-platform": platform.outputs})
    image = f"{login}/kaizen/iris@sha256:" + "0" * 64
    run = run_program("azure-prod", _with("azure-prod", image=image, nameSuffix="ab12"))
    names = {
        "storage": run.one("azure-native:storage:StorageAccount").inputs["accountName"],
        "vault": run.one("azure-native:keyvault:Vault").inputs["vaultName"],
        "endpoint": run.one("azure-native:machinelearningservices:OnlineEndpoint").inputs["endpointName"],
    }
    assert names["endpoint"] != plain_endpoint
    for kind, name in names.items():
        assert "ab12" in name, (kind, name)
    assert len(names["storage"]) <= 24 and names["storage"].isalnum() and names["storage"].islower()
    assert len(names["vault"]) <= 24 and len(names["endpoint"]) <= 32
    assert run.outputs["image"] == image


def test_azure_name_suffix_is_validated() -> None:
    with pytest.raises(Exception, match="nameSuffix"):
        parse_config(_with("azure-dev", nameSuffix="Bad-Suffix"), "azure-dev")
