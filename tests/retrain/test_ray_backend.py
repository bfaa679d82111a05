"""`kaizen retrain --backend ray` on a real two-node Ray cluster on 127.0.0.1: the same steps, the same
cache keys and a byte-identical package as the in-process run. The cluster is started with Ray's own
`ray start` (head + one worker node), checked to own no socket outside loopback, and stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_packages.cli import app
from tests.retrain.test_pipeline import CHAMPION, PIPELINE, _iris_csv, _weak_champion
from tests.support import ROOT, free_port

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kaizen-ml[ray]')")

LAUNCHER = Path(__file__).with_name("ray_loopback.py")
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:")


def _cluster_pids(temp_dir: str) -> set[int]:
    """Processes whose command line names the cluster's temp dir, and their children (agents, workers)."""
    roots: set[int] = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if temp_dir.encode() in (proc / "cmdline").read_bytes():
                    roots.add(int(proc.name))
            except OSError:
                continue
    found = set(roots)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in roots:
                found.add(int(proc.name))
    return found - {os.getpid()}


def _sockets_of(pids: set[int]) -> list[tuple[str, str, str]]:
    """(state, local, peer) of every TCP/UDP socket the processes own, from `ss -tunap`."""
    listing = subprocess.run(["ss", "-tunapH"], capture_output=True, text=True, check=True).stdout
    owned = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 7 and any(f"pid={pid}," in fields[6] for pid in pids):
            owned.append((fields[1], fields[4], fields[5]))
    return owned


def _stop(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Cluster:
    address: str
    temp_dir: str


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a worker node (one CPU each) on 127.0.0.1."""
    temp_dir = tempfile.mkdtemp(prefix="kz-ray-", dir="/tmp")  # short: Ray's unix sockets live under it
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", f"--object-store-memory={80 * 2**20}",
              f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    address = f"127.0.0.1:{port}"
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false"], [f"--address={address}"]):
            started = subprocess.run([sys.executable, str(LAUNCHER), "start", *args, *common], env=env,
                                     capture_output=True, text=True, timeout=120, check=False)
            assert started.returncode == 0, started.stdout + started.stderr
        yield Cluster(address, temp_dir)
    finally:
        _stop(_cluster_pids(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1780000000")  # the creation time a reproducible run pins
    return tmp_path / "audit.jsonl"


def _files(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def _retrain(tmp_path: Path, data: Path, champion: Path, name: str, cache: str, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["retrain", str(PIPELINE), "--data", str(data), "--champion", str(champion),
                                      "--out", str(tmp_path / name), "--cache", str(tmp_path / cache), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ray_backend_gives_the_in_process_package_byte_for_byte(tmp_path: Path, cluster: Cluster) -> None:
    _, data, weak = _weak_champion(tmp_path)
    local = _retrain(tmp_path, data, weak, "local", "cache-local")
    remote = _retrain(tmp_path, data, weak, "ray", "cache-ray", "--backend", "ray", "--ray-address", cluster.address)
    assert local["promoted"] is True and remote["promoted"] is True
    # The gated run executed load..gate, the packaging run reuses them and executes `package`.
    assert remote["executed"] == local["executed"] == ["package"]
    assert remote["cached"] == local["cached"] == ["load", "validate", "split", "train", "gate"]
    assert len(remote["nodes"]) == 2, remote  # type: ignore[arg-type]  # the steps ran on both nodes
    assert local["nodes"] == []
    package = Path("iris-classifier") / "1.0.2"
    assert _files(tmp_path / "local" / package) == _files(tmp_path / "ray" / package)
    assert (json.loads((tmp_path / "ray" / "run.json").read_text())["step_keys"]
            == json.loads((tmp_path / "local" / "run.json").read_text())["step_keys"])
    # Same keys, same cache: Ray over the in-process cache executes nothing and yields the same package.
    again = _retrain(tmp_path, data, weak, "ray-again", "cache-local", "--backend", "ray",
                     "--ray-address", cluster.address)
    assert again["executed"] == [] and again["nodes"] == []
    artifacts = {k: v for k, v in _files(tmp_path / "local" / package).items() if not k.startswith("model-card")}
    assert {k: v for k, v in _files(tmp_path / "ray-again" / package).items() if k in artifacts} == artifacts


def test_the_cluster_and_its_workers_own_no_socket_outside_loopback(cluster: Cluster) -> None:
    """After the runs above: GCS, raylets, agents and the task workers, every socket on 127.0.0.1."""
    pids = _cluster_pids(cluster.temp_dir)
    sockets = _sockets_of(pids)
    port = cluster.address.rsplit(":", 1)[1]
    assert any(state == "LISTEN" and local.endswith(f":{port}") for state, local, _ in sockets), sockets
    outside = [s for s in sockets if not s[1].startswith(LOOPBACK)
               or not (s[2].startswith(LOOPBACK) or s[2] in ("*:*", "0.0.0.0:*"))]
    assert outside == [], f"Ray sockets outside 127.0.0.1: {outside}"


def test_ray_backend_without_an_address_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    data = _iris_csv(tmp_path / "new.csv")
    result = CliRunner().invoke(app, ["retrain", str(PIPELINE), "--data", str(data), "--champion", str(CHAMPION),
                                      "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                                      "--backend", "ray"])
    assert result.exit_code == 1 and "needs the cluster's address" in result.output
    assert not (tmp_path / "out" / "iris-classifier").exists()


def test_a_step_failing_on_ray_is_the_same_clear_error_and_caches_nothing(tmp_path: Path, cluster: Cluster) -> None:
    import pandas as pd

    frame = pd.read_csv(_iris_csv(tmp_path / "new.csv")).drop(columns=["petal_width"])
    frame.to_csv(tmp_path / "missing.csv", index=False)
    result = CliRunner().invoke(app, ["retrain", str(PIPELINE), "--data", str(tmp_path / "missing.csv"),
                                      "--champion", str(CHAMPION), "--out", str(tmp_path / "out"),
                                      "--cache", str(tmp_path / "c"), "--backend", "ray",
                                      "--ray-address", cluster.address])
    assert result.exit_code == 1, result.output
    assert "lacks column 'petal_width'" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "c" / "iris-classifier" / "validate").iterdir()) == []  # no half-written output
    assert not (tmp_path / "out" / "iris-classifier").exists()
