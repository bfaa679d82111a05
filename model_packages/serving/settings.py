"""Runtime settings, read from the environment only, so one image runs unchanged everywhere."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from model_packages.errors import KaizenError
from model_packages.serving import contract as c
from model_packages.serving.contract import DEFAULT_MODEL_DIR, SAGEMAKER_MODEL_DIR
from model_packages.serving.drift import DriftConfig

DEFAULT_MAX_BODY = 1_572_864  # 1.5 MiB, Vertex AI's online prediction limit
DEFAULT_MAX_ROWS = 20_000  # above this one request holds the GIL long enough to delay health checks


class SettingsError(KaizenError):
    """An environment variable holds a value the runtime cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float = 0.0, high: float = 86_400.0,
           off: bool = False) -> float:
    """A finite number of seconds in low..high (0 also allowed when `off`: the feature is disabled)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if off and value == 0:
        return value
    if not math.isfinite(value) or not low <= value <= high:
        allowed = f"0 (off) or {low:g}..{high:g}" if off else f"{low:g}..{high:g}"
        raise SettingsError(f"{name}={raw} is outside {allowed}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")


def _route(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    if not raw.startswith("/") or any(c.isspace() for c in raw):
        raise SettingsError(f"{name}={raw!r} must be a path starting with '/'")
    return raw


def _model_dir(env: Mapping[str, str]) -> Path:
    if env.get(c.ENV_MODEL_DIR):
        return Path(env[c.ENV_MODEL_DIR])
    if (Path(SAGEMAKER_MODEL_DIR) / "kaizen.yaml").is_file():
        return Path(SAGEMAKER_MODEL_DIR)
    return Path(DEFAULT_MODEL_DIR)


@dataclass(frozen=True)
class CaptureSettings:
    """Data capture (`model_packages/serving/capture.py`): off unless KAIZEN_CAPTURE_RATE > 0."""

    rate: float = 0.0  # share of successful prediction requests captured, 0..1
    destination: str = "stdout"  # a directory, or "stdout"
    layout: str = "kaizen"  # "kaizen" (one record per request) or "sagemaker" (SageMaker's capture layout)
    max_file_bytes: int = 16 << 20
    max_file_seconds: float = 300.0
    max_total_bytes: int = 1 << 30
    queue_size: int = 10_000  # requests waiting for the writer
    queue_rows: int = 200_000  # rows waiting for the writer (bounds memory whatever the request size)
    endpoint: str = "kaizen"
    variant: str = "AllTraffic"

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CaptureSettings:
        legacy = _flag(env, "KAIZEN_DATA_CAPTURE", False)  # older switch: capture every request
        rate = _float(env, c.ENV_CAPTURE_RATE, 1.0 if legacy else 0.0, 0.0, 1.0)
        layout = env.get(c.ENV_CAPTURE_FORMAT) or "kaizen"
        if layout not in ("kaizen", "sagemaker"):
            raise SettingsError(f"KAIZEN_CAPTURE_FORMAT={layout!r} is not one of kaizen, sagemaker")
        destination = env.get(c.ENV_CAPTURE_DIR) or "stdout"
        if destination != "stdout" and not destination.startswith("/"):
            raise SettingsError(f"KAIZEN_CAPTURE_DIR={destination!r} must be an absolute directory or 'stdout'")
        for name in ("KAIZEN_CAPTURE_ENDPOINT", "KAIZEN_CAPTURE_VARIANT"):
            value = env.get(name) or ""
            if value and not all(c.isalnum() or c in "-_." for c in value):
                raise SettingsError(f"{name}={value!r} may hold only letters, digits, '-', '_' and '.'")
        max_file = _int(env, c.ENV_CAPTURE_MAX_FILE_BYTES, 16 << 20, 4096, 1 << 34)
        total = _int(env, c.ENV_CAPTURE_MAX_TOTAL_BYTES, 1 << 30, 4096, 1 << 44)
        if total < max_file:
            raise SettingsError(f"KAIZEN_CAPTURE_MAX_TOTAL_BYTES={total} is smaller than "
                                f"KAIZEN_CAPTURE_MAX_FILE_BYTES={max_file}")
        return cls(
            rate=rate, destination=destination, layout=layout, max_file_bytes=max_file,
            max_file_seconds=_float(env, "KAIZEN_CAPTURE_MAX_FILE_SECONDS", 300.0, 1.0, 86_400.0),
            max_total_bytes=total, queue_size=_int(env, "KAIZEN_CAPTURE_QUEUE", 10_000, 1, 1_000_000),
            queue_rows=_int(env, "KAIZEN_CAPTURE_QUEUE_ROWS", 200_000, 1, 100_000_000),
            endpoint=env.get("KAIZEN_CAPTURE_ENDPOINT") or "kaizen",
            variant=env.get("KAIZEN_CAPTURE_VARIANT") or "AllTraffic",
        )


@dataclass(frozen=True)
class Settings:
    """Everything the runtime reads from its environment."""

    model_dir: Path
    host: str = "0.0.0.0"
    port: int = c.PORT
    max_body_bytes: int = DEFAULT_MAX_BODY
    health_routes: tuple[str, ...] = ()
    liveness_routes: tuple[str, ...] = ()
    predict_routes: tuple[str, ...] = ()
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    log_requests: bool = True
    drain_seconds: float = 20.0
    drift: DriftConfig = field(default_factory=DriftConfig)
    max_rows: int = DEFAULT_MAX_ROWS
    keepalive_timeout: float = 5.0  # uvicorn's default; behind a load balancer: longer than its idle timeout
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    workers: int = 1
    serve_with: str = "compiled"  # or "source": the package's source artifact, not its compiled one
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        # Vertex sets AIP_HTTP_PORT; Cloud Run and Container Apps set PORT.
        port = _int(env, "AIP_HTTP_PORT", 0, 1, 65535) or _int(env, "PORT", 0, 1, 65535)
        port = port or _int(env, c.ENV_PORT, c.PORT, 1, 65535)
        health = [r for r in (_route(env, "AIP_HEALTH_ROUTE"), _route(env, c.ENV_READINESS_ROUTE)) if r]
        live = [r for r in (_route(env, c.ENV_LIVENESS_ROUTE),) if r]
        predict = [r for r in (_route(env, "AIP_PREDICT_ROUTE"), _route(env, c.ENV_SCORING_ROUTE)) if r]
        drift = _drift(env)
        return cls(
            model_dir=_model_dir(env),
            host=env.get(c.ENV_HOST) or "0.0.0.0",
            port=port,
            max_body_bytes=_int(env, "KAIZEN_MAX_BODY_BYTES", DEFAULT_MAX_BODY, 1024, 1 << 30),
            health_routes=tuple(health),
            liveness_routes=tuple(live),
            predict_routes=tuple(predict),
            capture=CaptureSettings.from_env(env),
            log_requests=_flag(env, "KAIZEN_LOG_REQUESTS", True),
            drain_seconds=_float(env, "KAIZEN_DRAIN_SECONDS", 20.0, 0.0, 3600.0),
            drift=drift,
            max_rows=_int(env, "KAIZEN_MAX_ROWS", DEFAULT_MAX_ROWS, 1, 10_000_000),
            keepalive_timeout=_float(env, c.ENV_KEEPALIVE_TIMEOUT, 5.0, 0.1, 3600.0),
            header_timeout=_float(env, "KAIZEN_HEADER_TIMEOUT", 10.0, 0.1, 3600.0),
            body_timeout=_float(env, "KAIZEN_BODY_TIMEOUT", 30.0, 0.1, 3600.0),
            max_connections=_int(env, "KAIZEN_MAX_CONNECTIONS", 1000, 1, 1_000_000),
            workers=_int(env, c.ENV_WORKERS, 0, 0, 1024) or default_workers(),
            serve_with=read_serve_with(env),
        )


def read_serve_with(env: Mapping[str, str]) -> str:
    """KAIZEN_SERVE_WITH: compiled (the default) or source; the runtime and the batch job read it here."""
    value = env.get(c.ENV_SERVE_WITH) or "compiled"
    if value not in ("compiled", "source"):
        raise SettingsError(f"{c.ENV_SERVE_WITH}={value!r}: use compiled or source")
    return value


def _drift(env: Mapping[str, str]) -> DriftConfig:
    """KAIZEN_DRIFT (on/off), the window (rows and seconds, whichever first), the rows below which a
    window is not judged, and the expected days between false alarms."""
    enabled = _flag(env, c.ENV_DRIFT, True)
    # Above 100,000 rows per window the exact tail tables grow past tens of MB; nobody needs more.
    window = _int(env, c.ENV_DRIFT_WINDOW_ROWS, 5000, 10, 100_000)
    min_rows = _int(env, c.ENV_DRIFT_MIN_ROWS, 100, 1, 100_000)
    if min_rows > window:
        raise SettingsError(f"KAIZEN_DRIFT_MIN_ROWS={min_rows} is larger than KAIZEN_DRIFT_WINDOW_ROWS={window}")
    seconds = _float(env, c.ENV_DRIFT_WINDOW_SECONDS, 3600.0, 1.0, 7 * 86_400.0)
    days = _float(env, c.ENV_DRIFT_FALSE_ALARM_DAYS, 30.0, 0.01, 36_500.0)
    if seconds / (days * 86_400.0) > 0.5:
        raise SettingsError(f"KAIZEN_DRIFT_FALSE_ALARM_DAYS={env.get('KAIZEN_DRIFT_FALSE_ALARM_DAYS')} is too short "
                            f"for KAIZEN_DRIFT_WINDOW_SECONDS={seconds:g}: at most one false alarm per two windows")
    return DriftConfig(enabled=enabled, window_rows=window, window_seconds=seconds, min_rows=min_rows,
                       false_alarm_days=days)


def _cgroup_cpus() -> float | None:
    """The container's CPU quota in CPUs (cgroup v2 cpu.max or v1 cfs quota), None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        try:
            quota_us = int(Path(base, "cpu.cfs_quota_us").read_text())
            period_us = int(Path(base, "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def default_workers() -> int:
    """One worker per CPU the container may use: the cgroup quota, else the CPUs this process may run on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
