"""Fixtures for the image tests: Docker engine, local bases, a real registry, built images.

Images are built once per session (session-scoped fixtures) under unique tags, so parallel
users of the same engine never collide. Every container runs with network_mode="host" on a
free port (SageMaker's fixed 8080 aside), read-only root and a tmpfs /tmp.
"""

from __future__ import annotations

import contextlib
import shutil
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from model_packages.image.build import BuildResult, build_package
from model_packages.image.context import Bases
from model_packages.image.localregistry import LocalRegistry
from model_packages.package import copy_without_serving_artifact
from tests.conftest import local_registry
from tests.support import EXAMPLES, free_port, unavailable

RUN_ID = uuid.uuid4().hex[:8]


def _docker() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def docker_client() -> Any:
    client = _docker()
    if client is None:
        unavailable("no Docker engine (scripts/start-docker.sh)", ci="no Docker engine in CI (scripts/start-docker.sh)")
    return client


@pytest.fixture(scope="session")
def bases(docker_client: Any) -> Bases:
    from model_packages.image.base import ensure_bases

    if shutil.which("mmdebstrap") is None:
        unavailable("mmdebstrap not installed", ci="mmdebstrap not installed in CI (scripts/setup.sh)")
    ensure_bases(docker_client, log=lambda _m: None)
    return Bases.local()


@pytest.fixture(scope="session")
def built_tags(docker_client: Any) -> Iterator[list[str]]:
    """Tags created by this session; removed at the end."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, noprune=True)


def _build(
    docker_client: Any, bases: Bases, package: Path, name: str, tags: list[str]
) -> BuildResult:
    tag = f"kaizen-test/{name}:{RUN_ID}"
    result = build_package(package, bases=bases, tag=tag, client=docker_client)
    tags.append(tag)
    return result


@contextmanager
def stub_http_server(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A throwaway HTTP server on 127.0.0.1 answering with `handler`; yields its port."""
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def sklearn_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris example served by scikit-learn itself (the sklearn image flavor)."""
    return copy_without_serving_artifact(EXAMPLES / "iris-classifier", tmp_path_factory.mktemp("sk") / "iris")


@pytest.fixture(scope="session")
def sklearn_image(docker_client: Any, bases: Bases, built_tags: list[str], sklearn_package: Path) -> BuildResult:
    return _build(docker_client, bases, sklearn_package, "iris", built_tags)


@pytest.fixture(scope="session")
def compiled_image(docker_client: Any, bases: Bases, built_tags: list[str]) -> BuildResult:
    """The iris example as shipped: scikit-learn source, compiled ONNX serving artifact."""
    return _build(docker_client, bases, EXAMPLES / "iris-classifier", "iris-compiled", built_tags)


@pytest.fixture(scope="session")
def onnx_image(docker_client: Any, bases: Bases, built_tags: list[str]) -> BuildResult:
    return _build(docker_client, bases, EXAMPLES / "diabetes-regressor", "diabetes", built_tags)


@pytest.fixture(scope="session")
def onnx_clean_image(
    docker_client: Any, bases: Bases, onnx_image: BuildResult, built_tags: list[str]
) -> BuildResult:
    """The ONNX example rebuilt without any build cache (for reproducibility checks)."""
    tag = f"kaizen-test/diabetes-clean:{RUN_ID}"
    result = build_package(
        EXAMPLES / "diabetes-regressor", bases=bases, tag=tag, client=docker_client, nocache=True
    )
    built_tags.append(tag)
    return result


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    with local_registry() as reg:
        yield reg


@dataclass
class Running:
    container: Any
    url: str
    started: float
    ready_after: float

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")


@contextmanager
def run_image(
    client: Any,
    image: str,
    *,
    env: dict[str, str] | None = None,
    port: int | None = None,
    port_env: str | None = "KAIZEN_PORT",
    command: list[str] | None = None,
    health: str = "/ping",
    timeout: float = 30.0,
    volumes: dict[str, dict[str, str]] | None = None,
) -> Iterator[Running]:
    """Run `image` like a cloud would (host network, read-only root, tmpfs /tmp); `volumes`
    bind-mounts host files (the arm64 cpuinfo under emulation)."""
    client.images.get(image)  # never let docker-py pull a missing image from a registry
    port = port or free_port()
    environment = {"KAIZEN_HOST": "127.0.0.1", "KAIZEN_DRAIN_SECONDS": "5", **(env or {})}
    if port_env:
        environment[port_env] = str(port)
    started = time.monotonic()
    container = client.containers.run(
        image,
        command=command if command is not None else ["serve"],
        environment=environment,
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        detach=True,
        name=f"kaizen-test-{RUN_ID}-{uuid.uuid4().hex[:6]}",
        volumes=volumes or {},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = started + timeout
        while True:
            try:
                if requests.get(url + health, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs().decode(errors="replace")
                raise AssertionError(f"container did not become ready on {url}{health}:\n{logs}")
            time.sleep(0.02)
        yield Running(container, url, started, time.monotonic() - started)
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


@pytest.fixture(scope="session")
def runner(docker_client: Any) -> Callable[..., Any]:
    def _run(image: str, **kwargs: Any) -> Any:
        return run_image(docker_client, image, **kwargs)

    return _run
