"""Push to a real registry (Debian's docker-registry on 127.0.0.1), pin, pull and run by digest."""

from __future__ import annotations

import http.server
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from model_packages.audit import provenance, trail
from model_packages.image.build import BuildResult, build_package
from model_packages.image.context import Bases
from model_packages.image.localregistry import LocalRegistry
from model_packages.image.registry import ImmutableTagError, PushError, push_image

from .conftest import RUN_ID, free_port, stub_http_server
from .test_build import new_version

pytestmark = pytest.mark.docker

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def pushed(
    docker_client: Any, sklearn_image: BuildResult, registry: LocalRegistry, tmp_path_factory: Any
) -> tuple[Any, Path]:
    records_path = tmp_path_factory.mktemp("records") / "kaizen-images.json"
    result = push_image(
        sklearn_image.tag, registry.address, client=docker_client, records_path=records_path
    )
    return result, records_path


def test_push_returns_digest_reference_and_records_it(
    pushed: tuple[Any, Path], registry: LocalRegistry, sklearn_image: BuildResult
) -> None:
    result, records_path = pushed
    pattern = rf"^{re.escape(registry.address)}/kaizen/iris-classifier@sha256:[0-9a-f]{{64}}$"
    assert re.match(pattern, result.reference)
    head = requests.head(
        f"{registry.url}/v2/kaizen/iris-classifier/manifests/1.0.0",
        headers={"Accept": MANIFEST_V2}, timeout=5,
    )
    assert head.headers["Docker-Content-Digest"] == result.digest
    entry = json.loads(records_path.read_text())["images"][0]
    assert entry["reference"] == result.reference
    assert (entry["model"], entry["version"]) == ("iris-classifier", "1.0.0")
    assert entry["created"] == sklearn_image.labels["org.opencontainers.image.created"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", entry["built_at"])


def test_a_recorded_push_leaves_signed_provenance_the_registry_confirms(
    pushed: tuple[Any, Path], sklearn_image: BuildResult
) -> None:
    result, _ = pushed
    pushes = [r for r in trail.read() if r["event"] == "image_push" and r["image"] == result.reference]
    assert len(pushes) == 1
    assert provenance.verify_pushes(pushes) == 1  # signature, subject digest, and the registry serves it
    envelope = json.loads((provenance.provenance_dir() / pushes[0]["provenance"]).read_text())
    found = trail.open_envelope(envelope, trail.public_keys(), "provenance")
    assert found["subject"][0]["digest"]["sha256"] == result.digest.split(":", 1)[1]
    deps = {d["name"]: d["digest"]["sha256"] for d in found["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["model-artifact"] == sklearn_image.labels["io.kaizen.model.artifact-sha256"]
    missing = {**pushes[0], "image": result.repository + "@sha256:" + "0" * 64}
    with pytest.raises(trail.AuditError, match="provenance is not about"):
        provenance.verify_pushes([missing])


def test_pull_and_run_by_digest(
    docker_client: Any, pushed: tuple[Any, Path], runner: Any
) -> None:
    result, _ = pushed
    image = docker_client.images.pull(result.reference)
    assert image.id == result.image_id
    with runner(result.reference) as running:
        assert requests.get(running.url + "/ping", timeout=2).status_code == 200


def test_same_image_again_is_not_pushed(
    docker_client: Any, pushed: tuple[Any, Path], sklearn_image: BuildResult,
    registry: LocalRegistry,
) -> None:
    first, records_path = pushed
    again = push_image(
        sklearn_image.tag, registry.address, client=docker_client, records_path=records_path
    )
    assert again.pushed is False and again.digest == first.digest


def test_clean_rebuild_of_same_version_is_the_same_image(
    docker_client: Any, onnx_image: BuildResult, onnx_clean_image: BuildResult,
    registry: LocalRegistry,
) -> None:
    first = push_image(onnx_image.tag, registry.address, client=docker_client, records_path=None)
    again = push_image(
        onnx_clean_image.tag, registry.address, client=docker_client, records_path=None
    )
    assert again.pushed is False and again.reference == first.reference


def test_tag_pointing_elsewhere_is_refused(
    docker_client: Any, bases: Bases, pushed: tuple[Any, Path], registry: LocalRegistry,
    built_tags: list[str], tmp_path: Path, sklearn_package: Path,
) -> None:
    first, _ = pushed
    # Same name and version, different content.
    package = new_version(sklearn_package, tmp_path / "iris", "1.0.0", description="changed")
    tag = f"kaizen-test/iris:{RUN_ID}-changed"
    changed = build_package(package, bases=bases, tag=tag, client=docker_client)
    built_tags.append(tag)
    with pytest.raises(ImmutableTagError, match=r"already points to"):
        push_image(changed.tag, registry.address, client=docker_client, records_path=None)
    head = requests.head(
        f"{registry.url}/v2/kaizen/iris-classifier/manifests/1.0.0",
        headers={"Accept": MANIFEST_V2}, timeout=5,
    )
    assert head.headers["Docker-Content-Digest"] == first.digest


def test_model_only_change_pushes_only_the_model_layer(
    docker_client: Any, bases: Bases, registry: LocalRegistry, built_tags: list[str],
    tmp_path: Path,
) -> None:
    """A realistic model (a few MB): a new version pushes about its own layer and no more."""
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from model_packages.package import create_package

    x, y = load_iris(return_X_y=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    results = []
    for version, seed in (("2.0.0", 1), ("2.0.1", 2)):
        model = RandomForestClassifier(n_estimators=150, random_state=seed).fit(x, y)
        package = create_package(
            model, np.asarray(x), y, out_dir=tmp_path / version, name="iris-forest",
            version=version, feature_names=names,
        )
        tag = f"kaizen-test/iris-forest:{RUN_ID}-{version}"
        build_package(package, bases=bases, tag=tag, client=docker_client)
        built_tags.append(tag)
        results.append(
            push_image(tag, registry.address, client=docker_client, records_path=None)
        )
    second = results[1]
    manifest = requests.get(
        f"{registry.url}/v2/kaizen/iris-forest/manifests/{second.digest}",
        headers={"Accept": MANIFEST_V2}, timeout=5,
    ).json()
    model_layer = int(manifest["layers"][-1]["size"])
    assert second.layers_pushed == 1
    assert second.bytes_pushed <= 1.1 * model_layer, (second.bytes_pushed, model_layer)


def test_unreachable_registry_is_retried_then_named(docker_client: Any, sklearn_image: Any) -> None:
    port = free_port()  # nothing listens there
    delays: list[float] = []
    with pytest.raises(PushError) as info:
        push_image(
            sklearn_image.tag, f"127.0.0.1:{port}", client=docker_client, records_path=None,
            retries=2, backoff=0.01, sleep=delays.append,
        )
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert "connection refused" in message
    assert delays == [0.01, 0.02]


class _Unauthorised(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="kaizen-test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def locked_registry() -> Iterator[str]:
    with stub_http_server(_Unauthorised) as port:
        yield f"127.0.0.1:{port}"


def test_unauthorised_registry_fails_at_once(
    docker_client: Any, sklearn_image: Any, locked_registry: str
) -> None:
    delays: list[float] = []
    with pytest.raises(PushError) as info:
        push_image(
            sklearn_image.tag, locked_registry, client=docker_client, records_path=None,
            sleep=delays.append,
        )
    assert locked_registry in str(info.value) and "unauthorised" in str(info.value)
    assert delays == []


def test_only_kaizen_model_images_are_pushed(
    docker_client: Any, bases: Bases, registry: LocalRegistry
) -> None:
    with pytest.raises(PushError, match="not a Kaizen model image"):
        push_image(bases.runtime, registry.address, client=docker_client, records_path=None)
