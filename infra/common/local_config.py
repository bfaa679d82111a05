"""Settings of the `local` target (stack config object `kaizen:local`), beside the clouds' in `config.py`.

Everything runs on this machine through the Docker engine, bound to 127.0.0.1:

    kaizen:local:
      package: examples/iris          # model package to build and push (relative to the project)
      registryPort: 5001              # local OCI registry
      endpointPort: 8080              # the endpoint's stable URL (a loopback reverse proxy)
      backendPorts: [8081, 8082]      # blue/green ports of the model containers behind it
      prometheusPort: 9090
      alerts: {latencyP99Ms: 1000, errors5xxPer5min: 5}  # as on the clouds
      drift: {falseAlarmDays: 30, windowSeconds: 3600}  # the runtime's calibrated alarm (infra/drift_config.py)
      batch: {input: /srv/in, output: /srv/out, inputs: [day.csv]}  # optional job (infra/batch_config.py)
      alerting:                       # optional: Alertmanager routing alerts to the retraining webhook
        port: 9093
        webhookUrl: http://127.0.0.1:9400/alerts
        webhookToken: ...             # `pulumi config set --secret --path kaizen:local.alerting.webhookToken`
        alerts: [KaizenDrift]
      capture: {rate: 0.1, dir: /srv/kaizen-capture, format: kaizen}  # optional data capture (host dir)

Keys are accepted in camelCase (Pulumi's convention) or snake_case. Unknown keys are refused, so a
typo fails before any resource is touched with a message naming the key.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from model_packages.serving import contract as c

from ..batch_config import BatchSettings
from ..drift_config import DriftSettings
from .schema import AlertThresholds, ConfigModel

Port = int


class LocalAlerts(AlertThresholds):
    """Thresholds of the Prometheus alert rules: the clouds' (`AlertThresholds`), p99 at most 10 min,
    and how long a condition holds before it fires (`for`)."""

    latency_p99_ms: Annotated[float, Field(gt=0, le=600_000)] = 1000.0
    for_: str = Field(default="2m", alias="for", pattern=r"^[0-9]+[smh]$")


Duration = Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h)$")]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class AlertingSettings(ConfigModel):
    """`kaizen:local.alerting`: Debian's Alertmanager on 127.0.0.1:port, Prometheus pointed at it, the
    named alerts routed to a webhook (`kaizen retrain-webhook`) with a bearer token."""

    port: Port = Field(default=9093, ge=1024, le=65535)
    webhook_url: str = Field(description="http://127.0.0.1:PORT/PATH of `kaizen retrain-webhook`")
    webhook_token: str = Field(min_length=16, max_length=512, repr=False,
                               description="Bearer token; a Pulumi secret (config set --secret --path)")
    alerts: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=lambda: ["KaizenDrift"], min_length=1)
    group_wait: Duration = "1s"
    group_interval: Duration = "5s"
    repeat_interval: Duration = "1h"

    @field_validator("webhook_url")
    @classmethod
    def _loopback(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme != "http" or url.hostname not in LOOPBACK_HOSTS or url.port is None:
            raise ValueError(f"{value!r}: the local target calls a webhook on this machine only "
                             "(http://127.0.0.1:PORT/PATH)")
        return value

    @field_validator("webhook_token")
    @classmethod
    def _token(cls, value: str) -> str:
        if any(ch.isspace() for ch in value) or not value.isprintable():
            raise ValueError("webhookToken: printable characters without spaces only")
        return value

    @property
    def webhook_port(self) -> int:
        port = urlsplit(self.webhook_url).port
        assert port is not None
        return port


class CaptureSettings(ConfigModel):
    """Data capture of the model container into a host directory (mounted at CONTAINER_DIR)."""

    CONTAINER_DIR: ClassVar[str] = "/var/lib/kaizen/capture"

    rate: float = Field(gt=0, le=1, description="Share of successful prediction requests captured")
    dir: str = Field(pattern=r"^/[^:]*$", description="Absolute host directory the records go to")
    format: Literal["kaizen", "sagemaker"] = "kaizen"
    max_file_bytes: int = Field(default=16 << 20, ge=4096)
    max_total_bytes: int = Field(default=1 << 30, ge=4096)

    def env(self) -> dict[str, str]:
        return {c.ENV_CAPTURE_RATE: f"{self.rate:g}", c.ENV_CAPTURE_DIR: self.CONTAINER_DIR,
                c.ENV_CAPTURE_FORMAT: self.format, c.ENV_CAPTURE_MAX_FILE_BYTES: str(self.max_file_bytes),
                c.ENV_CAPTURE_MAX_TOTAL_BYTES: str(self.max_total_bytes)}

    @model_validator(mode="after")
    def _bounds(self) -> CaptureSettings:
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError("capture.maxTotalBytes must be at least capture.maxFileBytes")
        return self


class LocalSettings(ConfigModel):
    """The `kaizen:local` stack config object."""

    package: str | None = Field(
        default=None,
        description="Model package directory to build and push; relative to the project.",
    )
    registry_port: Port = Field(default=5001, ge=1024, le=65535)
    endpoint_port: Port = Field(default=c.PORT, ge=1024, le=65535)
    backend_ports: tuple[Port, Port] | None = Field(
        default=None,
        description="Blue/green ports of the model containers; default endpointPort+1, +2.",
    )
    prometheus_port: Port = Field(default=9090, ge=1024, le=65535)
    scrape_interval: str = Field(default="5s", pattern=r"^[0-9]+[smh]$")
    base_image: str | None = Field(default=None, description="Base image of the model image.")
    restart_policy: Literal["always", "unless-stopped", "on-failure"] = "unless-stopped"
    ready_timeout_seconds: int = Field(default=120, ge=5, le=3600)
    alerts: LocalAlerts = LocalAlerts()
    drift: DriftSettings = Field(default_factory=DriftSettings, description="The runtime's calibrated drift alarm.")
    batch: BatchSettings | None = Field(
        default=None, description="A batch job run on `pulumi up` (infra/local/batch.py)."
    )
    alerting: AlertingSettings | None = Field(
        default=None, description="Alertmanager routing alerts to a webhook (infra/local/components.py)."
    )
    capture: CaptureSettings | None = Field(
        default=None, description="Sampled data capture into a host directory (model_packages/serving/capture.py)."
    )

    @model_validator(mode="after")
    def _check_batch(self) -> LocalSettings:
        if self.batch is not None:
            self.batch.check_target("local")
            if self.batch.schedule is not None:
                raise ValueError("batch.schedule: the local target runs the job on `pulumi up` (no scheduler "
                                 "here); schedules are for the cloud targets")
        return self

    @model_validator(mode="after")
    def _check_ports(self) -> LocalSettings:
        for port in self.backends:
            if not 1024 <= port <= 65535:
                raise ValueError(f"backendPorts: {port} is not in 1024..65535")
        ports = {
            "registryPort": self.registry_port,
            "endpointPort": self.endpoint_port,
            "prometheusPort": self.prometheus_port,
            "backendPorts[0]": self.backends[0],
            "backendPorts[1]": self.backends[1],
        }
        if self.alerting is not None:
            ports["alerting.port"] = self.alerting.port
            ports["alerting.webhookUrl"] = self.alerting.webhook_port
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                raise ValueError(f"{key} and {seen[port]} are both {port}: ports must differ")
            seen[port] = key
        return self

    @property
    def backends(self) -> tuple[int, int]:
        if self.backend_ports is not None:
            return self.backend_ports
        return (self.endpoint_port + 1, self.endpoint_port + 2)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.endpoint_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"
