"""Multi-platform images: `kaizen build --platform linux/amd64,linux/arm64`, `kaizen push
--platform`, an OCI image index in a real registry, and the arm64 image passing the serving
contract probes under QEMU user emulation (qemu-user-static + binfmt_misc).

onnxruntime reads /proc/cpuinfo at import; under qemu-user the guest sees the host's x86 one and
crashes, so the arm64 containers get an arm64 cpuinfo bind-mounted (arm64-cpuinfo.txt; real arm64
hardware has its own and needs nothing). One small model (the compiled iris, onnx flavor)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.image.base import emulation_ready, ensure_bases
from model_packages.image.context import Bases
from model_packages.image.localregistry import LocalRegistry
from tests.support import EXAMPLES, unavailable

from ..conftest import local_registry
from .conftest import RUN_ID
from .test_contract import require_port_8080, sagemaker_probes

pytestmark = pytest.mark.docker
CPUINFO = Path(__file__).with_name("arm64-cpuinfo.txt")
EMULATED = {str(CPUINFO): {"bind": "/proc/cpuinfo", "mode": "ro"}}
TAG = f"kaizen-test/iris-multi:{RUN_ID}"


@pytest.fixture(scope="module")
def arm64_bases(docker_client: Any, bases: Bases) -> Bases:
    if not emulation_ready("arm64"):
        unavailable("no arm64 emulation (qemu-user-static, binfmt_misc qemu-aarch64)",
                    ci="no arm64 emulation in CI: scripts/setup.sh installs qemu-user-static + binfmt-support")
    ensure_bases(docker_client, arch="arm64", log=lambda _m: None)
    return bases


@pytest.fixture(scope="module")
def own_registry() -> Iterator[LocalRegistry]:
    """This module's own registry on a free port (not the session one of test_push.py)."""
    with local_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def multiarch(arm64_bases: Bases, docker_client: Any, built_tags: list[str]) -> list[str]:
    """Both platform images of the compiled iris example, built by the CLI."""
    result = CliRunner().invoke(app, ["build", str(EXAMPLES / "iris-classifier"), "--local-base", "--tag", TAG,
                                      "--platform", "linux/amd64,linux/arm64"])
    tags = [f"{TAG}-amd64", f"{TAG}-arm64"]
    built_tags.extend(tags)
    assert result.exit_code == 0, result.output
    return tags


def test_each_platform_image_is_built_for_its_platform(multiarch: list[str], docker_client: Any) -> None:
    amd64, arm64 = (docker_client.images.get(tag).attrs for tag in multiarch)
    assert (amd64["Os"], amd64["Architecture"]) == ("linux", "amd64")
    assert (arm64["Os"], arm64["Architecture"]) == ("linux", "arm64")
    assert amd64["Config"]["Labels"]["io.kaizen.model.artifact-sha256"] == arm64["Config"]["Labels"][
        "io.kaizen.model.artifact-sha256"]
    # Per-architecture locks: same versions, other wheels.
    assert amd64["Config"]["Labels"]["io.kaizen.lock-sha256"] != arm64["Config"]["Labels"]["io.kaizen.lock-sha256"]
    assert arm64["Size"] < 200e6, arm64["Size"]


def test_arm64_image_passes_the_contract_probes_under_emulation(multiarch: list[str], runner: Any) -> None:
    arm64 = multiarch[1]
    env = {"KAIZEN_WORKERS": "1"}
    require_port_8080()
    with runner(arm64, port=8080, port_env=None, env=env, volumes=EMULATED, timeout=180) as running:
        predictions = sagemaker_probes(running.url, timeout=30)
        assert predictions == ["setosa", "virginica"]
        assert requests.get(running.url + "/health/ready", timeout=30).status_code == 200
        probe = ["/opt/venv/bin/python", "-c", "import platform; print(platform.machine())"]
        assert running.container.exec_run(probe).output.decode().strip() == "aarch64"
    with runner(arm64, port_env="PORT", env=env, volumes=EMULATED, timeout=180) as running:  # Cloud Run
        resp = requests.post(running.url + "/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == ["setosa"]


def test_index_lists_both_platforms_and_deploys_by_digest(multiarch: list[str], own_registry: LocalRegistry,
                                                          tmp_path: Path, built_tags: list[str]) -> None:
    records = tmp_path / "images.json"
    built_tags.extend(f"{own_registry.address}/kaizen/iris-classifier:1.0.0-{arch}" for arch in ("amd64", "arm64"))
    result = CliRunner().invoke(app, ["push", TAG, "--registry", own_registry.address, "--platform",
                                      "linux/amd64,linux/arm64", "--records", str(records), "--json"])
    assert result.exit_code == 0, result.output
    pushed = json.loads(result.stdout[result.stdout.index("{"):])
    reference = pushed["reference"]
    assert reference.startswith(f"{own_registry.address}/kaizen/iris-classifier@sha256:")
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]) == [
        ("linux", "amd64"), ("linux", "arm64")]
    for arch in ("amd64", "arm64"):  # a node of each architecture resolves the index to its image
        seen = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--override-arch", arch,
                               f"docker://{reference}"], capture_output=True, text=True, check=True, timeout=60)
        assert json.loads(seen.stdout)["Architecture"] == arch
    entry = json.loads(records.read_text())["images"][0]
    assert entry["reference"] == reference and sorted(entry["platforms"]) == ["linux/amd64", "linux/arm64"]
    again = CliRunner().invoke(app, ["push", TAG, "--registry", own_registry.address, "--platform",
                                     "linux/amd64,linux/arm64", "--records", str(records), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout[again.stdout.index("{"):])["digest"] == pushed["digest"]


def test_edge_runtime_scores_a_bundle_on_arm64(multiarch: list[str], docker_client: Any, tmp_path: Path) -> None:
    """The device runtime on an arm64 userland (the image carries `model_packages.edge`): same answers."""
    from model_packages.edge.bundle import export_bundle
    from model_packages.edge.runtime import EdgeModel

    bundle = tmp_path / "bundle"
    export_bundle(EXAMPLES / "iris-classifier", bundle)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp_path.chmod(0o755)
    for path in (bundle, *bundle.iterdir(), tmp_path / "rows.jsonl"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    out = docker_client.containers.run(
        multiarch[1], entrypoint=["/opt/venv/bin/python", "-m", "model_packages.edge"],
        command=["run", "/data/bundle", "--input", "/data/rows.jsonl", "--probabilities"],
        volumes={**EMULATED, str(tmp_path): {"bind": "/data", "mode": "ro"}}, network_mode="host",
        read_only=True, tmpfs={"/tmp": "rw,size=16m"}, remove=True, stdout=True, stderr=False,
    )
    device = [json.loads(line) for line in out.decode().splitlines()]
    host = EdgeModel(bundle).predict(rows)
    assert [d["prediction"] for d in device] == [h["prediction"] for h in host] == ["setosa", "virginica", "versicolor"]
    for d, h in zip(device, host, strict=True):
        for label, value in h["probabilities"].items():
            assert abs(d["probabilities"][label] - value) < 1e-12
