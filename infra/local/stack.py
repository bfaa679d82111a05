"""The local stack: the whole serving loop on this machine, through the Docker engine.

`deploy(cfg)` declares, in order:
- ``LocalTools``: the tools image (Debian's registry and Prometheus + the endpoint proxy, on the local base);
- ``LocalRegistryService``: an OCI registry bound to 127.0.0.1:registryPort;
- ``ModelImage``: the model package built and pushed by the packaging module, referenced by digest
  (or, when ``kaizen:image`` is set and no ``kaizen:local.package``, that digest-pinned image);
- ``LocalEndpoint``: the model container (host network, restarted by Docker) behind a loopback
  proxy on endpointPort, rolled out blue/green;
- ``LocalMonitoring``: Prometheus on prometheusPort scraping the endpoint, with alert rules;
- ``LocalAlerting`` (when ``kaizen:local.alerting`` is set): Alertmanager, Prometheus's alerts
  routed to the retraining webhook (a bearer token kept as a Pulumi secret);
- ``LocalBatchJob`` (when ``kaizen:local.batch`` is set): the image run once over mounted directories;
and returns the outputs every serving stack exports (`infra.common.outputs.SERVING`), plus
metricsUrl, registryUrl, alertmanagerUrl (with alerting) and batch* (with a batch job).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pulumi

from model_packages import stack_outputs as out

from ..common.config import StackConfig
from ..common.local_config import LocalSettings
from . import monitoring, scope_name


def _fail(key: str, message: str) -> pulumi.RunError:
    return pulumi.RunError(f"kaizen:local.{key}: {message}")


def _check_rules(rules: str) -> None:
    """`promtool check rules` before any resource, when promtool is on this machine."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        fh.write(rules)
    try:
        proc = subprocess.run([promtool, "check", "rules", fh.name], capture_output=True, text=True, timeout=60)
    finally:
        Path(fh.name).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise _fail("alerts", f"alert rules rejected by promtool:\n{proc.stdout}{proc.stderr}")


def deploy(cfg: StackConfig) -> dict[str, Any]:
    """Declare the local stack's resources for a validated `cfg`; returns the stack outputs."""
    from model_packages.image.base import RUNTIME_BASE

    from . import images
    from .components import (
        LocalEndpoint,
        LocalEndpointArgs,
        LocalMonitoring,
        LocalMonitoringArgs,
        LocalRegistryService,
        LocalRegistryServiceArgs,
        LocalTools,
        LocalToolsArgs,
        tools_binaries,
    )

    settings = cfg.local if isinstance(cfg.local, LocalSettings) else LocalSettings()
    scope = scope_name(pulumi.get_project(), pulumi.get_stack())

    # ---- everything that can be wrong is checked before the first resource --------------------
    package_dir: Path | None = None
    model_name = cfg.model.name if cfg.model else None
    model_version = cfg.model.version if cfg.model else None
    if settings.package:
        package_dir = Path(settings.package)
        if not package_dir.is_absolute():
            package_dir = Path.cwd() / package_dir
        if not (package_dir / "kaizen.yaml").is_file():
            raise _fail("package", f"{package_dir} is not a model package (no kaizen.yaml)")
        from model_packages.errors import PackageError
        from model_packages.package import verify_package

        try:
            manifest = verify_package(package_dir)
        except PackageError as exc:
            raise _fail("package", str(exc)) from None
        if model_name and model_name != manifest.name:
            raise pulumi.RunError(
                f"kaizen:model.name: {model_name!r} but the package {settings.package} is {manifest.name!r}"
            )
        model_name = manifest.name
        model_version = manifest.version
    elif cfg.image is None:
        raise _fail("package", "missing: give a model package to build (or kaizen:image)")
    if model_name is None or model_version is None:
        raise pulumi.RunError("kaizen:model: missing (object with name and version)")
    if settings.batch is not None:
        for name in settings.batch.inputs:
            if not (Path(settings.batch.input) / name).is_file():
                raise _fail("batch.inputs", f"{name}: no such file in {settings.batch.input}")
    alerts_rules = monitoring.alert_rules(settings.alerts, model=model_name,
                                          drift_days=settings.drift.false_alarm_days)
    _check_rules(alerts_rules)
    if settings.alerting is not None and not pulumi.runtime.is_config_secret("kaizen:local"):
        raise _fail("alerting.webhookToken", "kept in plain text: set it as a secret "
                    "(pulumi config set --secret --path kaizen:local.alerting.webhookToken TOKEN)")
    binaries = tools_binaries(alerting=settings.alerting is not None)

    # ---- resources -------------------------------------------------------------------------------
    proxy_source = (Path(__file__).parent / "proxy.py").read_text()
    h = hashlib.sha256(proxy_source.encode())
    h.update(RUNTIME_BASE.encode())
    for name, path in sorted(binaries.items()):
        h.update(name.encode() + hashlib.sha256(Path(path).read_bytes()).digest())
    tools = LocalTools(
        "tools",
        LocalToolsArgs(
            scope=scope,
            base=RUNTIME_BASE,
            binaries=binaries,
            proxy_source=proxy_source,
            tag=f"kaizen-local/{scope}-tools:{h.hexdigest()[:16]}",
        ),
    )
    registry = LocalRegistryService(
        "registry",
        LocalRegistryServiceArgs(
            scope=scope,
            port=settings.registry_port,
            tools_image=tools.ref,
            restart_policy=settings.restart_policy,
        ),
    )
    if package_dir is not None:
        from .components import ModelImage, ModelImageArgs

        image = ModelImage(
            "model-image",
            ModelImageArgs(
                scope=scope,
                package_dir=str(package_dir),
                package_hash=images.package_hash(package_dir),
                registry=registry.host,
                registry_id=registry.id_,
                base=settings.base_image,
            ),
        )
        image_ref: pulumi.Output[str] = image.ref
        digest: pulumi.Output[str] = image.digest
    else:
        assert cfg.image is not None
        image_ref = pulumi.Output.from_input(cfg.image)
        digest = pulumi.Output.from_input(cfg.image.rsplit("@", 1)[1])

    endpoint = LocalEndpoint(
        "endpoint",
        LocalEndpointArgs(
            scope=scope,
            image=image_ref,
            port=settings.endpoint_port,
            backend_ports=settings.backends,
            tools_image=tools.ref,
            model=model_name,
            env={**settings.drift.as_env(), **(settings.capture.env() if settings.capture else {})},
            restart_policy=settings.restart_policy,
            ready_timeout_seconds=settings.ready_timeout_seconds,
            capture_dir=settings.capture.dir if settings.capture else None,
        ),
    )
    alerting = None
    if settings.alerting is not None:
        from .components import LocalAlerting, LocalAlertingArgs

        alerting = LocalAlerting(
            "alerting",
            LocalAlertingArgs(scope=scope, settings=settings.alerting, tools_image=tools.ref,
                              restart_policy=settings.restart_policy),
        )
    monitor = LocalMonitoring(
        "monitoring",
        LocalMonitoringArgs(
            scope=scope,
            port=settings.prometheus_port,
            target=f"127.0.0.1:{settings.endpoint_port}",
            model=model_name,
            tools_image=tools.ref,
            alerts=settings.alerts,
            drift_days=settings.drift.false_alarm_days,
            scrape_interval=settings.scrape_interval,
            restart_policy=settings.restart_policy,
            alertmanager=alerting.host if alerting is not None else None,
        ),
        pulumi.ResourceOptions(depends_on=[endpoint] + ([alerting] if alerting is not None else [])),
    )
    outputs: dict[str, Any] = {
        **out.serving(endpoint_url=endpoint.url, image=image_ref, image_digest=digest, model_name=model_name,
                      model_version=model_version),
        out.METRICS_URL: monitor.url,
        out.REGISTRY_URL: registry.url,
    }
    if alerting is not None:
        outputs[out.ALERTMANAGER_URL] = alerting.url

    if settings.batch is not None:
        from .batch import LocalBatchJob, LocalBatchJobArgs

        job = LocalBatchJob("batch", LocalBatchJobArgs(scope=scope, image=image_ref, settings=settings.batch),
                            pulumi.ResourceOptions(depends_on=[endpoint]))
        outputs |= {out.BATCH_ROWS: job.rows, out.BATCH_REJECTS: job.rejects,
                    out.BATCH_ROWS_PER_SECOND: job.rows_per_second, out.BATCH_OUTPUT: job.output_path}
    return outputs
