"""Serving runtime settings per target: worker processes and HTTP keep-alive.

The runtime reads `KAIZEN_WORKERS` (worker processes) and `KAIZEN_KEEPALIVE_TIMEOUT` (seconds an
idle client connection is kept open). Workers default to the vCPUs of the instance / container;
the keep-alive must outlast the idle timeout of the cloud's front end on its connections to the
container, or the front end reuses a connection the container is closing (sporadic 502s).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from model_packages.serving import contract as c

# Idle timeout (s) of each front end towards the container, and where it is documented.
FRONT_END_IDLE_S: dict[str, tuple[int, str]] = {
    # SageMaker gives each invocation 60 s; a kept-alive connection must survive that window.
    "aws": (
        60,
        "https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html"
        " (containers must respond to /invocations within 60 seconds)",
    ),
    # Container Apps' Envoy ingress: "Network requests timeout after four minutes".
    "azure-containerapp": (240, "https://learn.microsoft.com/en-us/azure/container-apps/network-proxy#timeouts"),
    # Azure ML managed online deployment: request_timeout_ms is at most 180000 ms.
    "azure-ml": (
        180,
        "https://learn.microsoft.com/en-us/azure/machine-learning/reference-yaml-deployment-managed-online"
        " (request_settings.request_timeout_ms, max 180000)",
    ),
    # Google Front End: backend keep-alive fixed at 600 s; backends must keep connections longer.
    "gcp": (600, "https://cloud.google.com/load-balancing/docs/https#timeouts_and_retries"),
}
KEEPALIVE_MARGIN_S = 15

# EC2/SageMaker size -> vCPUs (https://aws.amazon.com/ec2/instance-types/, same sizes for ml.*).
_AWS_SIZE_VCPU = {
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "9xlarge": 36,
    "12xlarge": 48,
    "16xlarge": 64,
    "18xlarge": 72,
    "24xlarge": 96,
    "32xlarge": 128,
    "48xlarge": 192,
}
# Azure VM sizes whose number is not the vCPU count
# (https://learn.microsoft.com/en-us/azure/virtual-machines/dv2-dsv2-series).
_AZURE_VCPU = {
    "Standard_DS1_v2": 1,
    "Standard_DS2_v2": 2,
    "Standard_DS3_v2": 4,
    "Standard_DS4_v2": 8,
    "Standard_DS5_v2": 16,
    "Standard_D1_v2": 1,
    "Standard_D2_v2": 2,
    "Standard_D3_v2": 4,
    "Standard_D4_v2": 8,
    "Standard_D5_v2": 16,
}
# Families named <Letter><vCPUs><features>_v<n> (F4s_v2, E8s_v3, D16as_v4, NC6s_v3 ...)
_AZURE_NUMBERED = re.compile(r"^Standard_[A-Z]+(\d+)[a-z]*(_v\d+)?$")


def aws_vcpus(instance_type: str) -> int | None:
    """vCPUs of `ml.<family>.<size>`; None when the size is not in the table."""
    _, family, size = instance_type.split(".", 2)
    if size == "medium":
        return 2 if family.startswith("t") else 1  # ml.t2/t3.medium: 2 vCPU; Graviton .medium: 1
    return _AWS_SIZE_VCPU.get(size)


def azure_vcpus(instance_type: str) -> int | None:
    if instance_type in _AZURE_VCPU:
        return _AZURE_VCPU[instance_type]
    m = _AZURE_NUMBERED.match(instance_type)
    if m and not instance_type.startswith(("Standard_DS", "Standard_D1", "Standard_A")):
        return int(m.group(1))
    return None


def workers_for_cpu(cpu: float) -> int:
    """Fractional container CPUs (Container Apps 0.25-4, Cloud Run 1-8): one worker per whole core."""
    return max(1, math.floor(cpu))


def keepalive_default(front_end: str) -> int:
    return FRONT_END_IDLE_S[front_end][0] + KEEPALIVE_MARGIN_S


@dataclass(frozen=True)
class RuntimeEnv:
    workers: int
    keepalive_timeout_s: int

    def as_env(self) -> dict[str, str]:
        return {c.ENV_WORKERS: str(self.workers), c.ENV_KEEPALIVE_TIMEOUT: str(self.keepalive_timeout_s)}


def runtime_env(
    cloud: str, front_end: str, vcpus: int | None, workers: int | None, keepalive_s: int | None
) -> RuntimeEnv:
    """Explicit settings win; workers default to the vCPUs, keep-alive to the front end's idle + margin."""
    from .config import ConfigError

    if workers is None:
        if vcpus is None:
            raise ConfigError(
                f"kaizen:{cloud}.runtime.workers: the instance type's vCPU count is not in infra/common/runtime.py; "
                "set runtime.workers explicitly"
            )
        workers = vcpus
    idle, source = FRONT_END_IDLE_S[front_end]
    keepalive = keepalive_default(front_end) if keepalive_s is None else keepalive_s
    if keepalive <= idle:
        raise ConfigError(
            f"kaizen:{cloud}.runtime.keepAliveTimeout: {keepalive} s must exceed the front end's "
            f"idle timeout {idle} s ({source})"
        )
    return RuntimeEnv(workers=workers, keepalive_timeout_s=keepalive)
