"""Shared fixtures: example packages, tiny fixture models and a real runtime process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from model_packages.image.localregistry import LocalRegistry
from tests.support import EXAMPLES, free_port, unavailable


@pytest.fixture
def iris_package(tmp_path: Path) -> Path:
    """A private copy of the example classifier (skops), safe to corrupt."""
    return Path(shutil.copytree(EXAMPLES / "iris-classifier", tmp_path / "iris-classifier"))


@pytest.fixture
def diabetes_package(tmp_path: Path) -> Path:
    """A private copy of the example regressor (ONNX)."""
    return Path(shutil.copytree(EXAMPLES / "diabetes-regressor", tmp_path / "diabetes-regressor"))


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text()


@contextmanager
def running_server(
    package: Path, tmp_path: Path, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[RunningServer]:
    """Start `python -m model_packages.serving serve` on 127.0.0.1 and wait until ready."""
    port = port or free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "KAIZEN_")) and k != "PORT"}
    full_env.update({"KAIZEN_MODEL_DIR": str(package), "KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(port),
                     "KAIZEN_WORKERS": "1"})  # one process unless a test asks for more (CI runs on 2 cores)
    full_env.update(env or {})
    actual_port = int(full_env.get("AIP_HTTP_PORT") or full_env.get("PORT") or port)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "model_packages.serving", "serve"], env=full_env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{actual_port}"
    health = full_env.get("AIP_HEALTH_ROUTE", "/ping")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}: {log_path.read_text()}")
            try:
                if requests.get(url + health, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"server not ready in 60 s: {log_path.read_text()}")
        yield RunningServer(url, process, log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def local_registry() -> Iterator[LocalRegistry]:
    """A Debian `docker-registry` on its own free loopback port for as long as the block runs; a
    missing registry fails in CI and skips elsewhere."""
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry not installed", ci="docker-registry not installed in CI")
    with LocalRegistry() as reg:
        yield reg


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers inside a test; all are stopped at its end."""
    with ExitStack() as stack:

        def start(package: Path, env: dict[str, str] | None = None) -> RunningServer:
            return stack.enter_context(running_server(package, tmp_path, env))

        yield start


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One shared runtime serving the example classifier, for read-only HTTP tests."""
    tmp = tmp_path_factory.mktemp("iris-server")
    package = Path(shutil.copytree(EXAMPLES / "iris-classifier", tmp / "pkg"))
    with running_server(package, tmp) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _private_audit_trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test writes audit records and keys under a temporary directory, never the checkout or ~."""
    where = tmp_path_factory.mktemp("audit")
    saved = {k: os.environ.get(k) for k in ("KAIZEN_AUDIT_TRAIL", "KAIZEN_AUDIT_KEY", "KAIZEN_AUDIT_PUBKEYS")}
    os.environ.update({"KAIZEN_AUDIT_TRAIL": str(where / "audit.jsonl"), "KAIZEN_AUDIT_KEY": str(where / "key.pem")})
    os.environ.pop("KAIZEN_AUDIT_PUBKEYS", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_DOCKER_FIXTURES = {"docker_client", "bases", "registry"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a Docker or registry fixture `docker`, so the fast loop
    (scripts/test-fast.sh: `-m "not docker and not pulumi and not slow"`) never waits on one."""
    for item in items:
        if _DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


def pytest_unconfigure(config: pytest.Config) -> None:
    """A test that leaks a non-daemon thread would keep the interpreter (and CI) waiting forever:
    name the threads and exit with a failure instead."""
    import threading
    from concurrent.futures import thread as pool_threads

    pooled = set(pool_threads._threads_queues)  # pyright: ignore[reportAttributeAccessIssue]  # joined at exit
    leaked = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t not in pooled]
    for thread in leaked:
        thread.join(timeout=5)
    leaked = [t for t in leaked if t.is_alive()]
    if leaked:
        sys.stderr.write(f"\nleaked non-daemon threads kept running after the tests: {[t.name for t in leaked]}\n")
        sys.stderr.flush()
        os._exit(3)
