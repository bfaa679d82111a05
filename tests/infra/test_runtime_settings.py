"""KAIZEN_WORKERS / KAIZEN_KEEPALIVE_TIMEOUT per target: vCPUs of the instance, keep-alive above
the front end's idle timeout (infra/common/runtime.py), overridable from stack config."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.common.runtime import FRONT_END_IDLE_S, aws_vcpus, azure_vcpus, workers_for_cpu
from model_packages.serving import contract as c

from .conftest import Run, load_stack_config, run_program


def _env(run: Run) -> dict[str, str]:
    if run.of_type("aws:sagemaker/model:Model"):
        return run.one("aws:sagemaker/model:Model").inputs["primaryContainer"]["environment"]
    if run.of_type("azure-native:app:ContainerApp"):
        env = run.one("azure-native:app:ContainerApp").inputs["template"]["containers"][0]["env"]
        return {e["name"]: e.get("value", "") for e in env}
    if run.of_type("azure-native:machinelearningservices:OnlineDeployment"):
        return run.one("azure-native:machinelearningservices:OnlineDeployment").inputs["properties"][
            "environmentVariables"
        ]
    envs = run.one("gcp:cloudrunv2/service:Service").inputs["template"]["containers"][0]["envs"]
    return {e["name"]: e["value"] for e in envs}


@pytest.mark.parametrize(
    ("stack", "workers", "front_end"),
    [
        ("aws-dev", 2, "aws"),  # ml.m5.large
        ("aws-prod", 4, "aws"),  # ml.m5.xlarge
        ("aws-pr-7", 1, "aws"),  # serverless 2048 MB
        ("azure-dev", 1, "azure-containerapp"),  # 0.5 vCPU
        ("azure-prod", 4, "azure-ml"),  # Standard_DS3_v2
        ("gcp-dev", 1, "gcp"),  # cpu "1"
        ("gcp-prod", 1, "gcp"),
    ],
)
def test_defaults_per_target(stack_run, stack: str, workers: int, front_end: str) -> None:
    env = _env(stack_run(stack))
    assert env[c.ENV_WORKERS] == str(workers)
    assert int(env[c.ENV_KEEPALIVE_TIMEOUT]) > FRONT_END_IDLE_S[front_end][0]


def test_vcpu_tables() -> None:
    assert [aws_vcpus(t) for t in ("ml.t2.medium", "ml.m5.large", "ml.c5.2xlarge", "ml.g5.12xlarge")] == [2, 2, 8, 48]
    assert aws_vcpus("ml.m5.huge") is None
    assert [azure_vcpus(t) for t in ("Standard_DS3_v2", "Standard_F8s_v2", "Standard_E4s_v3")] == [4, 8, 4]
    assert azure_vcpus("Standard_Weird") is None
    assert [workers_for_cpu(c) for c in (0.25, 0.5, 1.0, 1.75, 4.0)] == [1, 1, 1, 1, 4]


def _with_runtime(stack: str, runtime: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(load_stack_config(stack))
    cloud = stack.split("-")[0]
    cfg[cloud]["runtime"] = runtime
    cfg[cloud].update(extra)
    return cfg


def test_config_overrides_the_defaults() -> None:
    env = _env(run_program("gcp-dev", _with_runtime("gcp-dev", {"workers": 3, "keepAliveTimeout": 900})))
    assert (env[c.ENV_WORKERS], env[c.ENV_KEEPALIVE_TIMEOUT]) == ("3", "900")


def test_keepalive_below_the_front_end_idle_timeout_is_refused() -> None:
    with pytest.raises(Exception, match=r"kaizen:gcp\.runtime\.keepAliveTimeout: 300 s must exceed .* 600 s"):
        run_program("gcp-dev", _with_runtime("gcp-dev", {"keepAliveTimeout": 300}))


def test_unknown_instance_type_needs_explicit_workers() -> None:
    with pytest.raises(Exception, match=r"kaizen:azure\.runtime\.workers"):
        run_program("azure-prod", _with_runtime("azure-prod", {}, instanceType="Standard_Weird"))
    env = _env(run_program("azure-prod", _with_runtime("azure-prod", {"workers": 2}, instanceType="Standard_Weird")))
    assert env[c.ENV_WORKERS] == "2"
