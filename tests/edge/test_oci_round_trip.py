"""Round trip of an edge bundle through a real registry, pulled by ORAS itself:
export -> push by digest -> `oras pull` by digest -> score with the minimal runtime -> the server's
answers within the recorded quantisation tolerance. The push is in the audit trail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from model_packages.audit import trail
from model_packages.edge.bundle import export_bundle, parity_rows
from model_packages.edge.oci import ARTIFACT_TYPE, pull_bundle, push_bundle
from model_packages.errors import KaizenError
from model_packages.image.localregistry import LocalRegistry
from model_packages.manifest import read_manifest
from tests.conftest import local_registry, running_server
from tests.support import ROOT, unavailable

pytestmark = pytest.mark.slow
IRIS = ROOT / "examples" / "iris-classifier"


def _oras() -> str:
    found = shutil.which("oras") or str(Path.home() / ".cache" / "kaizen" / "bin" / "oras")
    if not Path(found).is_file():
        unavailable("oras is not installed (scripts/setup.sh builds it)",
                    ci="oras is not installed in CI (scripts/setup.sh)")
    return found


@pytest.fixture(scope="module")
def edge_registry() -> Iterator[LocalRegistry]:
    """This module's own registry on its own free port (never shared with the image tests)."""
    with local_registry() as reg:
        yield reg


def _server_answers(package: Path, rows: list[list[float]], tmp: Path) -> list[dict[str, object]]:
    with running_server(package, tmp) as server:
        resp = requests.post(server.url + "/predict", timeout=30,
                             json={"instances": rows, "parameters": {"probabilities": True}})
        assert resp.status_code == 200, resp.text
        return resp.json()["predictions"]


def _device_answers(bundle: Path, rows: list[list[float]], tmp: Path) -> list[dict[str, object]]:
    source = tmp / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "model_packages.edge", "run", str(bundle), "--input",
                           str(source), "--probabilities"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("quantise", [False, True], ids=["float", "int8"])
def test_round_trip_through_oras(quantise: bool, mlp_package: Path, edge_registry: LocalRegistry,
                                 tmp_path: Path) -> None:
    oras = _oras()
    package = mlp_package if quantise else IRIS
    info = export_bundle(package, tmp_path / "bundle", quantise=quantise)
    pushed = push_bundle(tmp_path / "bundle", edge_registry.address)
    assert pushed.pushed and pushed.reference.startswith(f"{edge_registry.address}/kaizen/")
    assert "@sha256:" in pushed.reference
    fetched = subprocess.run([oras, "manifest", "fetch", "--plain-http", pushed.reference],
                             capture_output=True, text=True, timeout=60, check=True)
    manifest = json.loads(fetched.stdout)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert {layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]} == {
        "model.onnx", "schema.json", "baseline.json", "bundle.json"}
    pulled = tmp_path / "device"
    subprocess.run([oras, "pull", "--plain-http", "-o", str(pulled), pushed.reference],
                   capture_output=True, text=True, timeout=60, check=True)
    for name in ("model.onnx", "schema.json", "baseline.json", "bundle.json"):
        assert (pulled / name).read_bytes() == (tmp_path / "bundle" / name).read_bytes()

    rows = parity_rows(read_manifest(package))
    server = _server_answers(package, rows, tmp_path)
    device = _device_answers(pulled, rows, tmp_path)
    tolerance = info["parity"]["max_abs_diff"]
    same_label = [s["label"] == d["prediction"] for s, d in zip(server, device, strict=True)]
    assert sum(same_label) / len(rows) >= info["parity"]["labels_equal"]
    worst = max(abs(float(s["probabilities"][k]) - float(v))  # type: ignore[index]
                for s, d in zip(server, device, strict=True) for k, v in d["probabilities"].items())  # type: ignore[union-attr]
    assert worst <= tolerance + 1e-9, (worst, tolerance)
    if quantise:
        assert tolerance > 0 and pushed.tag == "1.0.0-int8"
    else:
        assert all(same_label) and tolerance == 0.0

    pushes = [r for r in trail.read() if r["event"] == "edge_bundle_push" and r["reference"] == pushed.reference]
    assert len(pushes) == 1 and pushes[0]["parity"] == info["parity"]


def test_pull_by_digest_checks_every_byte(edge_registry: LocalRegistry, tmp_path: Path) -> None:
    export_bundle(IRIS, tmp_path / "bundle")
    pushed = push_bundle(tmp_path / "bundle", edge_registry.address, audit=False)
    again = push_bundle(tmp_path / "bundle", edge_registry.address, audit=False)
    assert again.digest == pushed.digest and not again.pushed and again.bytes_pushed == 0
    out = pull_bundle(pushed.reference, tmp_path / "pulled")
    assert (out / "model.onnx").read_bytes() == (tmp_path / "bundle" / "model.onnx").read_bytes()
    with pytest.raises(KaizenError, match="not pinned by digest"):
        pull_bundle(f"{edge_registry.address}/kaizen/iris-classifier/edge:1.0.0", tmp_path / "x")
    # Another bundle under the same version tag is refused: tags are immutable.
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    bundle["parity"]["rows"] += 1
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(bundle))
    with pytest.raises(KaizenError, match="immutable"):
        push_bundle(tmp_path / "bundle", edge_registry.address, audit=False)


def test_cli_export_pull_run(edge_registry: LocalRegistry, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from model_packages.cli import app

    runner = CliRunner()
    exported = runner.invoke(app, ["export", "edge", str(IRIS), "--out", str(tmp_path / "b"),
                                   "--registry", edge_registry.address])
    assert exported.exit_code == 0, exported.output
    reference = json.loads(exported.stdout)["reference"]
    pulled = runner.invoke(app, ["edge", "pull", reference, "--out", str(tmp_path / "device")])
    assert pulled.exit_code == 0, pulled.output
    rows = tmp_path / "rows.jsonl"
    rows.write_text("[6.7, 3.0, 5.2, 2.3]\n")
    ran = runner.invoke(app, ["edge", "run", str(tmp_path / "device"), "--input", str(rows),
                              "--out", str(tmp_path / "answers.jsonl")])
    assert ran.exit_code == 0, ran.output
    assert json.loads((tmp_path / "answers.jsonl").read_text()) == {"prediction": "virginica"}
    refused = runner.invoke(app, ["export", "edge", str(IRIS), "--out", str(tmp_path / "q"), "--quantize"])
    assert refused.exit_code == 1 and "nothing to quantise" in refused.output
