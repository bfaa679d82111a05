"""Stack configuration (Pulumi config namespace `kaizen`), validated before any resource exists.

Every key of the namespace is read at once and validated by pydantic. A wrong type, a missing
value, an unknown key or target, or an image referenced by tag instead of digest stops the program
with one message that names the key (`kaizen:aws.minInstances: ...`).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from model_packages.ci.workflows import DEPLOY_ENVIRONMENTS
from model_packages.image import records
from model_packages.image.refs import ImageRef, check_digest_ref

from ..batch_config import BatchSettings
from ..drift_config import DriftSettings
from ..retraining_config import RetrainingSettings
from .local_config import LocalSettings
from .schema import MODEL_CONFIG, AlertThresholds

NAMESPACE = "kaizen"
Target = Literal["aws", "azure", "gcp", "local"]
StackKind = Literal["platform", "dev", "staging", "prod", "preview"]
SERVING_KINDS: tuple[StackKind, ...] = ("dev", "staging", "prod", "preview")

_AWS_LOG_RETENTION = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ConfigError(pulumi.RunError):
    """Invalid stack configuration: the message names the offending key(s)."""


class _Model(BaseModel):
    model_config = MODEL_CONFIG


ImageStr = Annotated[str, AfterValidator(check_digest_ref)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]


class ModelRef(_Model):
    name: Name
    version: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._+-]+$")]


class Alerts(AlertThresholds):
    """Alert thresholds of a cloud: the shared ones (the local target's too) and saturation."""

    saturation_percent: Annotated[float, Field(gt=0, le=100)] = 80.0


class RuntimeSettings(_Model):
    """Serving runtime knobs (defaults per target: infra/common/runtime.py)."""

    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    keep_alive_timeout: Annotated[int, Field(ge=1, le=3600)] | None = None


class _Serving(_Model):
    runtime: RuntimeSettings = RuntimeSettings()
    min_instances: Annotated[int, Field(ge=0, le=100)] = 1
    max_instances: Annotated[int, Field(ge=1, le=100)] = 2
    canary_percent: Annotated[int, Field(ge=0, le=50)] = 0
    public: bool = False
    log_retention_days: Annotated[int, Field(ge=1, le=3653)] = 30
    alerts: Alerts = Alerts()
    drift: DriftSettings = DriftSettings()

    @model_validator(mode="after")
    def _bounds(self) -> _Serving:
        if self.min_instances > self.max_instances:
            raise ValueError(f"minInstances ({self.min_instances}) is larger than maxInstances ({self.max_instances})")
        return self


# --- AWS -------------------------------------------------------------------------------------
class AwsNotifications(_Model):
    topic_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$")] | None = None
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []


class AwsServerless(_Model):
    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: Annotated[int, Field(ge=1, le=200)] = 5


class AwsSettings(_Serving):
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")]
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    serverless: AwsServerless | None = None
    target_invocations_per_instance: Annotated[int, Field(ge=1)] = 100
    data_capture_percent: Annotated[int, Field(ge=0, le=100)] = 20
    batch: BatchSettings | None = None  # a SageMaker Processing job of the same image (infra/aws/batch.py)
    notifications: AwsNotifications = AwsNotifications()
    ecr_keep_images: Annotated[int, Field(ge=1, le=1000)] = 30
    # false for one `pulumi up` before an instanceType change (UpdateEndpoint refuses to change
    # the instance type of an autoscaling target), then true again.
    autoscaling: bool = True

    @model_validator(mode="after")
    def _aws(self) -> AwsSettings:
        if self.batch is not None:
            self.batch.check_target("aws")
        if self.log_retention_days not in _AWS_LOG_RETENTION:
            raise ValueError(
                f"logRetentionDays {self.log_retention_days} is not one CloudWatch accepts {_AWS_LOG_RETENTION}"
            )
        if self.serverless is None and self.min_instances < 1:
            raise ValueError("minInstances must be >= 1 for an instance-backed SageMaker endpoint")
        return self


# --- Azure -----------------------------------------------------------------------------------
class AzureNotifications(_Model):
    action_group_id: str | None = None
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []


class AzureSettings(_Serving):
    location: Annotated[str, Field(pattern=r"^[a-z0-9]+$")]
    compute: Literal["containerapp", "ml"] = "containerapp"
    cpu: Annotated[float, Field(gt=0, le=4)] = 0.5
    memory: Annotated[str, Field(pattern=r"^\d+(\.\d+)?Gi$")] = "1Gi"
    instance_type: str = "Standard_DS3_v2"
    concurrency: Annotated[int, Field(ge=1)] = 50
    stable_revision: str | None = None
    ml_traffic: dict[str, Annotated[int, Field(ge=0, le=100)]] | None = None
    # Azure ML: workspace/endpoint/egress through private endpoints only (they, and the ACR's,
    # must exist in your network; this stack does not create them). Off: Entra ID-authenticated.
    ml_private_network: bool = False
    previous_image: ImageStr | None = None
    acr_sku: Literal["Basic", "Standard", "Premium"] = "Premium"
    # Appended to globally unique names (registry, storage account, Key Vault, ML endpoint), so a
    # second copy of this project does not collide with the first. Same value on every stack.
    name_suffix: Annotated[str, Field(pattern=r"^[a-z0-9]{1,8}$")] | None = None
    # VNet-integrated Container Apps environment (dedicated subnet): internal ingress becomes
    # reachable from the VNet instead of only from inside the environment.
    infrastructure_subnet_id: Annotated[str, Field(pattern=r"^/subscriptions/.+/subnets/[^/]+$")] | None = None
    notifications: AzureNotifications = AzureNotifications()
    batch: BatchSettings | None = None  # a Container Apps job of the same image (infra/azure/batch.py)

    @model_validator(mode="after")
    def _azure(self) -> AzureSettings:
        if self.batch is not None:
            if self.compute != "containerapp":
                raise ValueError("batch runs as a Container Apps job in the stack's Container Apps environment: "
                                 f"needs compute containerapp, not {self.compute!r}")
            self.batch.check_target("azure")
        if not 30 <= self.log_retention_days <= 730:
            raise ValueError("logRetentionDays must be between 30 and 730 on Log Analytics")
        if self.compute == "containerapp" and self.canary_percent and not self.stable_revision:
            raise ValueError("canaryPercent needs stableRevision (the revision keeping the rest)")
        if self.compute == "ml" and self.min_instances < 1:
            raise ValueError("minInstances must be >= 1 for an Azure ML managed online deployment")
        if self.ml_traffic and sum(self.ml_traffic.values()) != 100:
            raise ValueError("mlTraffic percentages must add up to 100 ({} = deliberately no traffic)")
        return self


# --- GCP -------------------------------------------------------------------------------------
class GcpNotifications(_Model):
    channel_ids: list[Annotated[str, Field(pattern=r"^projects/[^/]+/notificationChannels/\d+$")]] = []
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []


class GcpSettings(_Serving):
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
    region: Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+\d$")]
    cpu: Literal["1", "2", "4", "6", "8"] = "1"
    memory: Annotated[str, Field(pattern=r"^\d+(Mi|Gi)$")] = "512Mi"
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 80
    ingress: Literal["internal", "internal-and-cloud-load-balancing", "all"] = "internal"
    invokers: list[Annotated[str, Field(pattern=r"^(serviceAccount|group|user|domain):\S+$|^allUsers$")]] = []
    stable_revision: str | None = None
    registry_keep_images: Annotated[int, Field(ge=1, le=1000)] = 30
    notifications: GcpNotifications = GcpNotifications()
    batch: BatchSettings | None = None  # a Cloud Run Job of the same image (infra/gcp/batch.py)

    @model_validator(mode="after")
    def _gcp(self) -> GcpSettings:
        if self.batch is not None:
            self.batch.check_target("gcp")
        if "allUsers" in self.invokers and not self.public:
            raise ValueError("invokers contains allUsers but public is false")
        if self.ingress == "all" and not self.public:
            raise ValueError("ingress 'all' needs public: true (endpoints are private by default)")
        if self.canary_percent and not self.stable_revision:
            raise ValueError("canaryPercent needs stableRevision (the revision keeping the rest)")
        return self


class GithubSettings(_Model):
    """`kaizen:github` of a platform stack: the repository (and its environments) whose GitHub
    Actions jobs may assume the deploy identity through OIDC. No other workflow, branch or fork can."""

    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    environments: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]] = Field(
        default_factory=lambda: list(DEPLOY_ENVIRONMENTS), min_length=1
    )


class StackConfig(_Model):
    """All of `kaizen:*` for one stack."""

    target: Target
    stack_kind: StackKind
    model: ModelRef | None = None
    image: ImageStr | None = None
    owner: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9_-]+$")]
    cost_center: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9_-]+$")]
    platform_stack: Annotated[str, Field(pattern=r"^[\w.-]+/[\w.-]+/[\w.-]+$")] | None = None
    deletion_protection: bool | None = None
    platform_models: list[Name] = []
    github: GithubSettings | None = None
    aws: AwsSettings | None = None
    azure: AzureSettings | None = None
    gcp: GcpSettings | None = None
    local: LocalSettings | None = None
    retraining: RetrainingSettings | None = None  # the trainer as a managed job (infra/<cloud>/retraining.py)

    @model_validator(mode="after")
    def _consistent(self) -> StackConfig:
        section = {"aws": self.aws, "azure": self.azure, "gcp": self.gcp, "local": self.local}
        if self.target != "local" and section[self.target] is None:
            raise _KeyError(self.target, f"target is {self.target!r} but kaizen:{self.target} is missing")
        for other, value in section.items():
            if other != self.target and value is not None:
                raise _KeyError(other, f"set, but the target is {self.target!r}")
        if self.stack_kind in SERVING_KINDS and self.target != "local":
            if self.model is None:
                raise _KeyError("model", "missing (object with name and version)")
            if self.image is None:
                raise _KeyError("image", "missing (digest-pinned reference)")
            if self.platform_stack is None:
                raise _KeyError(
                    "platformStack",
                    "missing: serving stacks read the registry from the platform stack "
                    "(e.g. organization/kaizen/aws-platform)",
                )
        if self.github is not None and (self.stack_kind != "platform" or self.target == "local"):
            raise _KeyError("github", "only a cloud platform stack declares the GitHub Actions deploy trust")
        if self.stack_kind == "platform" and self.target == "aws" and not self.platform_models:
            raise _KeyError("platformModels", "missing: the ECR repositories to create (model names)")
        settings = section[self.target]
        notifications = getattr(settings, "notifications", None)
        if self.stack_kind in SERVING_KINDS and notifications is not None:
            targets = [v for k, v in notifications.model_dump().items() if v]
            if not targets:
                raise _KeyError(
                    f"{self.target}.notifications",
                    "missing: alerts need a notification target (emails or an existing topic/group/channel)",
                )
        if self.target == "azure" and self.azure is not None and self.azure.compute == "ml" and self.image:
            _check_ml_traffic(self.azure, self.image, self.stack_kind)
        if self.retraining is not None:
            if self.target == "local" or self.stack_kind not in SERVING_KINDS:
                raise _KeyError("retraining", "only a cloud serving stack declares the retraining job (beside its "
                                "endpoint); the local stack retrains through Alertmanager")
            if self.target == "azure" and self.azure is not None and self.azure.compute != "containerapp":
                raise _KeyError("retraining", "on Azure the trainer runs as a Container Apps job in the stack's "
                                "Container Apps environment: needs kaizen:azure.compute containerapp, not "
                                f"{self.azure.compute!r}")
            try:
                self.retraining.check_target(self.target)
            except ValueError as err:
                raise _KeyError("retraining", str(err)) from None
        if self.stack_kind == "preview" and self.deletion_protection:
            raise _KeyError("deletionProtection", "preview stacks are torn down: must be false")
        return self

    # -- derived --------------------------------------------------------------------------------
    @property
    def is_preview(self) -> bool:
        return self.stack_kind == "preview"

    @property
    def protect(self) -> bool:
        if self.deletion_protection is not None:
            return self.deletion_protection
        return self.stack_kind in ("prod", "platform")

    @property
    def image_ref(self) -> ImageRef:
        if self.image is None:
            raise ConfigError("kaizen:image: missing (digest-pinned reference)")
        return ImageRef.parse(self.image)

    @property
    def model_ref(self) -> ModelRef:
        if self.model is None:
            raise ConfigError("kaizen:model: missing (object with name and version)")
        return self.model


def ml_deployment_name(image: str) -> str:
    """Azure ML deployment of a digest-pinned image: `d<first 12 hex of the digest>`."""
    return "d" + image.rsplit("@sha256:", 1)[1][:12]


def _check_ml_traffic(settings: AzureSettings, image: str, kind: StackKind) -> None:
    """An online endpoint routes only per its traffic map: without mlTraffic it serves nothing."""
    deployments = {ml_deployment_name(image)}
    if settings.previous_image:
        deployments.add(ml_deployment_name(settings.previous_image))
    if settings.ml_traffic is None and kind != "preview":
        raise _KeyError(
            "azure.mlTraffic",
            f"missing: the endpoint would route 0 % to {sorted(deployments)}. First deploy: mlTraffic {{}} "
            f"(Azure refuses traffic to a deployment that does not exist yet), then {{{sorted(deployments)[0]}: 100}}",
        )
    unknown = sorted(set(settings.ml_traffic or {}) - deployments)
    if unknown:
        raise _KeyError("azure.mlTraffic", f"names {unknown}, not a deployment of this stack {sorted(deployments)}")


class _KeyError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{NAMESPACE}:{key}: {message}")


def infer_stack_kind(stack: str) -> StackKind | None:
    """`aws-dev` -> dev, `gcp-pr-42` / `pr-42` -> preview, `azure-platform` -> platform."""
    if re.search(r"(^|-)pr-\d+$", stack):
        return "preview"
    for kind in ("platform", "dev", "staging", "prod"):
        if stack == kind or stack.endswith(f"-{kind}"):
            return kind  # type: ignore[return-value]
    return None


def _raw_namespace() -> dict[str, Any]:
    """Every `kaizen:*` config value of the running stack, JSON objects decoded."""
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE:
            continue
        key = key.removeprefix("config:")
        if isinstance(value, str):
            stripped = value.strip()
            if stripped[:1] in "{[" or stripped in ("true", "false") or re.fullmatch(r"-?\d+(\.\d+)?", stripped):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(stripped)
        raw[key] = value
    return raw


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith(f"{NAMESPACE}:"):
            lines.append(msg)
            continue
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "missing value"
        elif e["type"] in ("literal_error", "enum"):
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] != "value_error" and "input" in e and not isinstance(e["input"], dict | list):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{NAMESPACE}:{loc}: {msg}" if loc else f"{NAMESPACE}: {msg}")
    return "invalid stack configuration: " + "; ".join(dict.fromkeys(lines))


def parse_config(raw: dict[str, Any], stack: str) -> StackConfig:
    """Validate `raw` (`kaizen:*` without the namespace) for the stack named `stack`."""
    data = dict(raw)
    if "stackKind" not in data:
        kind = infer_stack_kind(stack)
        if kind is None:
            raise ConfigError(
                f"{NAMESPACE}:stackKind: missing, and the stack name {stack!r} does not tell "
                "(use <cloud>-dev|staging|prod|platform or <cloud>-pr-<N>)"
            )
        data["stackKind"] = kind
    if "image" not in data and data.get("stackKind") in SERVING_KINDS:
        image = _image_from_record(data.get("model"))
        if image is not None:
            data["image"] = image
    try:
        return StackConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_config() -> StackConfig:
    """Read and validate the running stack's `kaizen:*` configuration."""
    return parse_config(_raw_namespace(), pulumi.get_stack())


def _image_from_record(model: Any) -> str | None:
    """The digest-pinned reference `kaizen push` recorded for this model and version, if any.

    Read with :func:`model_packages.image.records.find_image`, the one reader of
    `kaizen-images.json` ($KAIZEN_IMAGES_FILE or ./kaizen-images.json).
    """
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return None
    version = model.get("version") if isinstance(model.get("version"), str) else None
    if not records.records_path().is_file():
        return None
    try:
        return records.find_image(model["name"], version).reference
    except records.NoImageRecorded:
        return None
    except records.RecordsError as err:
        raise ConfigError(f"{NAMESPACE}:image: {err}") from None
