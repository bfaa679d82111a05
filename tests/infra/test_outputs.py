"""One output contract for every serving stack (model_packages/stack_outputs.py), under Pulumi mocks: each cloud
and serving stack kind, and the local target, export endpointUrl, image, imageDigest, modelName and
modelVersion, with values that agree with the stack's config and its cloud-specific outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest

from model_packages import stack_outputs as out

from .conftest import RecordingMocks, RecordingMonitor, Run, load_stack_config

SERVING = [f"{c}-{k}" for c in ("aws", "azure", "gcp") for k in ("dev", "staging", "prod", "pr-7")]


def test_the_contract_names_are_camel_case_and_stable() -> None:
    # Scripts, workflows and users read these names: a rename is a breaking change, not a refactor.
    assert out.SERVING == ("endpointUrl", "image", "imageDigest", "modelName", "modelVersion")
    assert (out.DASHBOARD, out.METRICS_URL, out.REGISTRY_URL, out.ALERTMANAGER_URL) == (
        "dashboard", "metricsUrl", "registryUrl", "alertmanagerUrl")


def _model(stack: str) -> dict[str, Any]:
    cfg = load_stack_config(stack)
    return {"image": cfg["image"], **cfg["model"]}


@pytest.mark.parametrize("stack", SERVING)
def test_every_cloud_serving_stack_exports_the_common_outputs(stack_run, stack: str) -> None:
    run: Run = stack_run(stack)
    outputs = run.outputs
    assert set(out.SERVING) <= set(outputs), sorted(outputs)
    model = _model(stack)
    assert outputs[out.IMAGE] == model["image"]
    assert outputs[out.IMAGE_DIGEST] == model["image"].rsplit("@", 1)[1]
    assert (outputs[out.MODEL_NAME], outputs[out.MODEL_VERSION]) == (model["name"], model["version"])
    url = outputs[out.ENDPOINT_URL]
    if stack.startswith("aws"):
        assert url == (f"https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/"
                       f"{outputs[out.SAGEMAKER_ENDPOINT]}/invocations")
        assert outputs[out.DASHBOARD] == ("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
                                          f"#dashboards:name={outputs['dashboardName']}")
    elif stack.startswith("gcp"):
        assert url == outputs[out.CLOUD_RUN_URI] and url.startswith("https://")
        dashboard = outputs["dashboardId"].rsplit("/", 1)[-1]
        assert dashboard and outputs[out.DASHBOARD] == (
            f"https://console.cloud.google.com/monitoring/dashboards/custom/{dashboard}?project="
            f"{load_stack_config(stack)['gcp']['project']}")
    elif out.AZURE_ML_SCORING_URI in outputs:
        assert url == outputs[out.AZURE_ML_SCORING_URI]
    else:
        assert url == f"https://{outputs[out.CONTAINER_APP_FQDN]}"
    if stack.startswith("azure"):
        assert outputs[out.DASHBOARD] == f"https://portal.azure.com/#resource{outputs['dashboardId']}"
        assert outputs["dashboardId"].startswith("/subscriptions/")


def _run_local(config: dict[str, Any]) -> dict[str, Any]:
    from infra import program

    mocks = RecordingMocks({})
    pulumi.runtime.set_mocks(mocks, project="kaizen", stack="local-outputs", preview=False,
                             monitor=RecordingMonitor(mocks))
    pulumi.runtime.set_all_config({f"kaizen:{k}": v if isinstance(v, str) else json.dumps(v)
                                   for k, v in config.items()})
    exported: dict[str, Any] = {}

    @pulumi.runtime.test
    def _main() -> Any:
        return pulumi.Output.from_input(program.main()).apply(exported.update)

    try:
        _main()
    finally:
        pulumi.runtime.set_all_config({}, [])
    return exported


def test_the_local_stack_exports_the_common_outputs_and_its_own(tmp_path: Path) -> None:
    for tool in ("prometheus", "promtool", "docker-registry"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup.sh)")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "day.csv").write_text("x\n1\n")
    image = "127.0.0.1:25001/kaizen/iris-classifier@sha256:" + "1" * 64
    outputs = _run_local({
        "target": "local", "stackKind": "dev", "owner": "ml-platform", "costCenter": "ml-0001",
        "model": {"name": "iris-classifier", "version": "1.0.0"}, "image": image,
        "local": {"registryPort": 25001, "endpointPort": 25080, "prometheusPort": 25090,
                  "batch": {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"), "inputs": ["day.csv"]}},
    })
    assert set(out.SERVING) <= set(outputs), sorted(outputs)
    assert outputs[out.ENDPOINT_URL] == "http://127.0.0.1:25080"
    assert (outputs[out.IMAGE], outputs[out.IMAGE_DIGEST]) == (image, "sha256:" + "1" * 64)
    assert (outputs[out.MODEL_NAME], outputs[out.MODEL_VERSION]) == ("iris-classifier", "1.0.0")
    assert outputs[out.METRICS_URL] == "http://127.0.0.1:25090"
    assert outputs[out.REGISTRY_URL] == "http://127.0.0.1:25001"
    assert {out.BATCH_ROWS, out.BATCH_REJECTS, out.BATCH_ROWS_PER_SECOND, out.BATCH_OUTPUT} <= set(outputs)
    assert not [k for k in outputs if "_" in k], "stack outputs are camelCase"
