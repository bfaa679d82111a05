"""Local ComponentResources: tools image, registry, model image, endpoint, monitoring, alerting.

They mirror the cloud components: a registry, an image referenced by digest, an endpoint with a
URL, monitoring with alert rules; each takes a typed Args dataclass, parents its children and
registers its outputs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pulumi
from pulumi.dynamic import Resource

from model_packages.image.localregistry import registry_config
from model_packages.serving import contract as c

from ..common.local_config import AlertingSettings, LocalAlerts
from . import monitoring
from .providers import (
    ModelContainerProvider,
    ModelImageProvider,
    RouterProvider,
    ServiceProvider,
    ToolsImageProvider,
)

PKG = "kaizen:local"


class ToolsImage(Resource, module="kaizen-local", name="ToolsImage"):
    ref: pulumi.Output[str]


class Service(Resource, module="kaizen-local", name="Service"):
    container_id: pulumi.Output[str]


class ModelImageBuild(Resource, module="kaizen-local", name="ModelImageBuild"):
    """The build + push inside the `ModelImage` component."""

    ref: pulumi.Output[str]
    digest: pulumi.Output[str]


# ModelImageBuild used to register as type `ModelImage`: the alias keeps existing stacks' build.
_BUILD_ALIASES = [pulumi.Alias(type_="pulumi-python:dynamic/kaizen-local:ModelImage")]


class ModelContainer(Resource, module="kaizen-local", name="ModelContainer"):
    port: pulumi.Output[int]
    name: pulumi.Output[str]


class Router(Resource, module="kaizen-local", name="Router"):
    upstream_port: pulumi.Output[int]


def tools_binaries(*, alerting: bool = False) -> dict[str, str]:
    """Host binaries copied into the tools image (Debian packages docker-registry, prometheus and,
    with alerting, prometheus-alertmanager), by the name they get in the image."""
    found: dict[str, str] = {}
    wanted = [
        ("docker-registry", "docker-registry", "docker-registry"),
        ("prometheus", "prometheus", "prometheus"),
        ("promtool", "promtool", "prometheus"),
    ]
    if alerting:
        wanted += [
            ("alertmanager", "prometheus-alertmanager", "prometheus-alertmanager"),
            ("amtool", "amtool", "prometheus-alertmanager"),
        ]
    for name, binary, package in wanted:
        path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
        if path is None:
            raise pulumi.RunError(f"`{binary}` not found: apt-get install -y {package}")
        found[name] = path
    return found


# ---- tools image --------------------------------------------------------------------------------
@dataclass
class LocalToolsArgs:
    scope: str
    base: str
    binaries: dict[str, str]
    proxy_source: str
    tag: str


class LocalTools(pulumi.ComponentResource):
    """The image the registry, Prometheus and the endpoint's proxy run from."""

    ref: pulumi.Output[str]

    def __init__(self, name: str, args: LocalToolsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:Tools", name, None, opts)
        image = ToolsImage(
            ToolsImageProvider(),
            f"{name}-image",
            {
                "scope": args.scope,
                "base": args.base,
                "binaries": args.binaries,
                "proxy_source": args.proxy_source,
                "tag": args.tag,
                "image_id": None,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.ref = image.id
        self.register_outputs({"ref": self.ref})


# ---- registry -----------------------------------------------------------------------------------
@dataclass
class LocalRegistryServiceArgs:
    scope: str
    port: int
    tools_image: pulumi.Input[str]
    restart_policy: str = "unless-stopped"


class LocalRegistryService(pulumi.ComponentResource):
    """Debian's `docker-registry` (CNCF distribution) in a container bound to 127.0.0.1:port.
    Its blobs live in a named volume that `pulumi destroy` removes. (The same registry as a plain
    process, for tests and scripts: `model_packages.image.localregistry.LocalRegistry`.)"""

    url: pulumi.Output[str]
    host: pulumi.Output[str]
    id_: pulumi.Output[str]

    def __init__(self, name: str, args: LocalRegistryServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:Registry", name, None, opts)
        config = registry_config(args.port, PurePosixPath("/var/lib/registry"))
        cname = f"{args.scope}-registry"
        service = Service(
            ServiceProvider(),
            f"{name}-service",
            {
                "name": cname,
                "scope": args.scope,
                "role": "registry",
                "image": args.tools_image,
                "command": ["docker-registry", "serve", "/etc/kaizen/registry.yml"],
                "env": {},
                "files": {"/etc/kaizen/registry.yml": config},
                "volumes": {f"{cname}-data": "/var/lib/registry"},
                "ready_url": f"http://127.0.0.1:{args.port}/v2/",
                "restart_policy": args.restart_policy,
                "reload_url": None,
                "check": None,
                "container_id": None,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.host = pulumi.Output.from_input(f"127.0.0.1:{args.port}")
        self.url = pulumi.Output.from_input(f"http://127.0.0.1:{args.port}")
        self.id_ = service.id
        self.register_outputs({"url": self.url, "host": self.host})


# ---- model image --------------------------------------------------------------------------------
@dataclass
class ModelImageArgs:
    scope: str
    package_dir: str
    package_hash: str
    registry: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    base: str | None = None


class ModelImage(pulumi.ComponentResource):
    """The model package's image, built and pushed by the packaging module.

    `ref` is the digest-pinned reference."""

    ref: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(self, name: str, args: ModelImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:ModelImage", name, None, opts)
        image = ModelImageBuild(
            ModelImageProvider(),
            f"{name}-build",
            {
                "scope": args.scope,
                "package_dir": args.package_dir,
                "package_hash": args.package_hash,
                "registry": args.registry,
                "registry_id": args.registry_id,
                "base": args.base or "",
                "ref": None,
                "digest": None,
                "local_tag": None,
            },
            pulumi.ResourceOptions(parent=self, aliases=_BUILD_ALIASES),
        )
        self.ref = image.ref
        self.digest = image.digest
        self.register_outputs({"ref": self.ref, "digest": self.digest})


# ---- endpoint -----------------------------------------------------------------------------------
@dataclass
class LocalEndpointArgs:
    scope: str
    image: pulumi.Input[str]
    port: int
    backend_ports: tuple[int, int]
    tools_image: pulumi.Input[str]
    model: str
    env: dict[str, str] = field(default_factory=dict)
    restart_policy: str = "unless-stopped"
    ready_timeout_seconds: int = 120
    ready_path: str = c.READY_PATH
    capture_dir: str | None = None  # host directory for data capture (env carries the contract's ENV_CAPTURE_*)


class LocalEndpoint(pulumi.ComponentResource):
    """The model container (by digest, host network, restarted by Docker) behind a loopback proxy
    on the stable endpoint port. A new image starts a new container on the spare backend port;
    the proxy switches once it is ready; the old container drains and goes."""

    url: pulumi.Output[str]
    backend_port: pulumi.Output[int]
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: LocalEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:Endpoint", name, None, opts)
        backend = ModelContainer(
            ModelContainerProvider(),
            f"{name}-model",
            {
                "scope": args.scope,
                "image": args.image,
                "ports": list(args.backend_ports),
                "env": args.env,
                "restart_policy": args.restart_policy,
                "ready_path": args.ready_path,
                "model": args.model,
                "ready_timeout": args.ready_timeout_seconds,
                "capture_dir": args.capture_dir,
                "port": None,
                "name": None,
                "container_id": None,
            },
            pulumi.ResourceOptions(parent=self),
        )
        router = Router(
            RouterProvider(),
            f"{name}-router",
            {
                "name": f"{args.scope}-endpoint",
                "scope": args.scope,
                "image": args.tools_image,
                "port": args.port,
                "upstream_port": backend.port,
                "ready_path": args.ready_path,
                "restart_policy": args.restart_policy,
                "token": None,
                "volume": None,
                "container_id": None,
            },
            pulumi.ResourceOptions(parent=self, additional_secret_outputs=["token"]),
        )
        self.url = pulumi.Output.from_input(f"http://127.0.0.1:{args.port}")
        self.backend_port = router.upstream_port
        self.container_name = backend.name
        self.register_outputs(
            {
                "url": self.url,
                "backend_port": self.backend_port,
                "container_name": self.container_name,
            }
        )


# ---- monitoring ---------------------------------------------------------------------------------
@dataclass
class LocalMonitoringArgs:
    scope: str
    port: int
    target: str  # host:port scraped at contract.METRICS_PATH
    model: str
    tools_image: pulumi.Input[str]
    alerts: LocalAlerts = field(default_factory=LocalAlerts)
    drift_days: float = 30.0  # the runtime's time between false drift alarms (for the alert summary)
    scrape_interval: str = "5s"
    restart_policy: str = "unless-stopped"
    alertmanager: str | None = None  # host:port Prometheus sends its alerts to


class LocalMonitoring(pulumi.ComponentResource):
    """Prometheus bound to 127.0.0.1:port scraping the endpoint, with the alert rules for p99
    latency, 5xx errors and drift (`promtool check config` runs before it starts; a rules change
    is an in-place reload)."""

    url: pulumi.Output[str]
    rules: str

    def __init__(self, name: str, args: LocalMonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:Monitoring", name, None, opts)
        self.rules = monitoring.alert_rules(args.alerts, model=args.model, drift_days=args.drift_days)
        config = monitoring.prometheus_config(
            target=args.target, scrape_interval=args.scrape_interval, model=args.model,
            alertmanager=args.alertmanager,
        )
        cname = f"{args.scope}-prometheus"
        base = f"http://127.0.0.1:{args.port}"
        Service(
            ServiceProvider(),
            f"{name}-prometheus",
            {
                "name": cname,
                "scope": args.scope,
                "role": "prometheus",
                "image": args.tools_image,
                "command": [
                    "prometheus",
                    f"--config.file={monitoring.CONFIG_PATH}",
                    "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=7d",
                    f"--web.listen-address=127.0.0.1:{args.port}",
                    "--web.enable-lifecycle",
                ],
                "env": {},
                "files": {monitoring.CONFIG_PATH: config, monitoring.RULES_PATH: self.rules},
                "volumes": {f"{cname}-data": "/prometheus"},
                "ready_url": f"{base}/-/ready",
                "restart_policy": args.restart_policy,
                "reload_url": f"{base}/-/reload",
                "check": ["promtool", "check", "config", monitoring.CONFIG_PATH],
                "container_id": None,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.url = pulumi.Output.from_input(base)
        self.register_outputs({"url": self.url})


# ---- alerting -----------------------------------------------------------------------------------
@dataclass
class LocalAlertingArgs:
    scope: str
    settings: AlertingSettings
    tools_image: pulumi.Input[str]
    restart_policy: str = "unless-stopped"


class LocalAlerting(pulumi.ComponentResource):
    """Debian's Alertmanager bound to 127.0.0.1:port (clustering off), routing the configured alerts
    to the webhook with a bearer token. `amtool check-config` runs before it starts; a config change
    is an in-place reload. The config (it holds the token) is a secret in the state."""

    url: pulumi.Output[str]
    host: str

    def __init__(self, name: str, args: LocalAlertingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{PKG}:Alerting", name, None, opts)
        cname = f"{args.scope}-alertmanager"
        port = args.settings.port
        base = f"http://127.0.0.1:{port}"
        config = monitoring.alertmanager_config(args.settings)
        templates = sorted(Path(monitoring.ALERTMANAGER_TEMPLATES).glob("*.tmpl"))  # Debian's build loads them
        if not templates:
            raise pulumi.RunError(f"no {monitoring.ALERTMANAGER_TEMPLATES}/*.tmpl: apt-get install -y "
                                  "prometheus-alertmanager")
        files = pulumi.Output.secret({monitoring.ALERTMANAGER_CONFIG_PATH: config,
                                      **{str(t): t.read_text() for t in templates}})
        Service(
            ServiceProvider(),
            f"{name}-alertmanager",
            {
                "name": cname,
                "scope": args.scope,
                "role": "alertmanager",
                "image": args.tools_image,
                "command": [
                    "alertmanager",
                    f"--config.file={monitoring.ALERTMANAGER_CONFIG_PATH}",
                    "--storage.path=/alertmanager",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                "env": {},
                "files": files,
                "volumes": {f"{cname}-data": "/alertmanager"},
                "ready_url": f"{base}/-/ready",
                "restart_policy": args.restart_policy,
                "reload_url": f"{base}/-/reload",
                "check": ["amtool", "check-config", monitoring.ALERTMANAGER_CONFIG_PATH],
                "container_id": None,
            },
            pulumi.ResourceOptions(parent=self, additional_secret_outputs=["files"]),
        )
        self.host = f"127.0.0.1:{port}"
        self.url = pulumi.Output.from_input(base)
        self.register_outputs({"url": self.url})
