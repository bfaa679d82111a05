"""The runtime as a real process over real HTTP: every cloud's contract, V2 clients, metrics, drain."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import RunningServer
from tests.support import EXAMPLES, broken, free_port

ROW = [5.1, 3.5, 1.4, 0.2]
IRIS = EXAMPLES / "iris-classifier"


def test_sagemaker_contract(iris_server: RunningServer) -> None:
    assert requests.get(iris_server.url + "/ping", timeout=5).status_code == 200
    answer = requests.post(iris_server.url + "/invocations", json={"instances": [ROW]}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"predictions": ["setosa"]}
    csv = requests.post(iris_server.url + "/invocations", data="5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3",
                        headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=5)
    assert csv.status_code == 200 and csv.text == "setosa\nvirginica\n"


def test_vertex_contract(server_factory: Callable[..., RunningServer]) -> None:
    port = free_port()
    server = server_factory(IRIS, {"AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": "/v1/health",
                                   "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/m:predict"})
    assert server.url.endswith(f":{port}")
    assert requests.get(server.url + "/v1/health", timeout=5).status_code == 200
    answer = requests.post(server.url + "/v1/endpoints/e/deployedModels/m:predict",
                           json={"instances": [ROW], "parameters": {}}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"predictions": ["setosa"]}


def test_azure_and_cloud_run_contracts(server_factory: Callable[..., RunningServer]) -> None:
    port = free_port()
    server = server_factory(IRIS, {"PORT": str(port), "KAIZEN_LIVENESS_ROUTE": "/alive",
                                   "KAIZEN_READINESS_ROUTE": "/isready", "KAIZEN_SCORING_ROUTE": "/score"})
    assert server.url.endswith(f":{port}")
    assert requests.get(server.url + "/alive", timeout=5).status_code == 200
    assert requests.get(server.url + "/isready", timeout=5).status_code == 200
    answer = requests.post(server.url + "/score", json={"instances": [ROW]}, timeout=5)
    assert answer.json() == {"predictions": ["setosa"]}


def test_tritonclient_v2(iris_server: RunningServer) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(iris_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris-classifier")
    metadata = client.get_model_metadata("iris-classifier")
    assert metadata["versions"] == ["1.0.0"]
    for binary in (False, True):
        tensor = httpclient.InferInput("input", [2, 4], "FP64")
        tensor.set_data_from_numpy(np.array([ROW, [6.7, 3.0, 5.2, 2.3]]), binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("predict", binary_data=False),
                   httpclient.InferRequestedOutput("predict_proba", binary_data=False)]
        result = client.infer("iris-classifier", [tensor], outputs=outputs, model_version="1.0.0")
        labels = result.as_numpy("predict")
        assert labels is not None and [x.decode() if isinstance(x, bytes) else x for x in labels] == [
            "setosa", "virginica"]
        proba = result.as_numpy("predict_proba")
        assert proba is not None and proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(Exception, match="not found"):
        client.infer("other-model", [tensor])


def test_regressor_onnx_server(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(EXAMPLES / "diabetes-regressor")
    row = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.02]
    answer = requests.post(server.url + "/invocations", json={"instances": [row, row]}, timeout=5).json()
    assert len(answer["predictions"]) == 2 and 25 < answer["predictions"][0] < 350


def test_metrics_pass_promtool(iris_server: RunningServer) -> None:
    for _ in range(3):
        requests.post(iris_server.url + "/invocations", json={"instances": [ROW]}, timeout=5)
    requests.post(iris_server.url + "/invocations", data="{", timeout=5)
    text = requests.get(iris_server.url + "/metrics", timeout=5).text
    assert 'kaizen_requests_total{route="invocations",status="200"}' in text
    assert 'kaizen_request_duration_seconds_bucket{le="0.001",route="invocations"}' in text
    assert "kaizen_requests_in_flight" in text and 'kaizen_model_info{artifact_sha256="' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_request_logs_are_json_with_request_id(iris_server: RunningServer) -> None:
    requests.post(iris_server.url + "/invocations", json={"instances": [ROW]},
                  headers={"X-Amzn-RequestId": "aws-req-7"}, timeout=5)
    time.sleep(0.7)  # log lines are flushed every 0.5 s
    lines = [json.loads(x) for x in iris_server.logs().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x.get("request_id") == "aws-req-7"]
    assert mine and mine[0]["status"] == 200 and mine[0]["model"] == "iris-classifier"
    assert "5.1" not in re.sub(r'"ts":[0-9.]+', "", iris_server.logs())  # never the payload (a time stamp may hold 5.1)


def test_malformed_http_does_not_kill_server(iris_server: RunningServer) -> None:
    host, port = iris_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    big = requests.post(iris_server.url + "/invocations", data=b"1" * 2_000_000,
                        headers={"Content-Type": "application/json"}, timeout=10)
    assert big.status_code == 413 and "exceeds" in big.json()["error"]
    assert requests.get(iris_server.url + "/ping", timeout=5).status_code == 200


def test_sigterm_drains_in_flight_request(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(IRIS)
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [ROW]}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.2)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body[10:])
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200") and b"setosa" in reply
        assert b"connection: close" in reply.lower()
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/ping", timeout=2)


def test_corrupt_package_exits_with_named_error(iris_package: Path, tmp_path: Path) -> None:
    package = broken.hash_mismatch(iris_package)
    result = subprocess.run([sys.executable, "-m", "model_packages.serving", "serve"], capture_output=True,
                            text=True, timeout=60, env={"KAIZEN_MODEL_DIR": str(package),
                                                        "KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(free_port()),
                                                        "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 1
    assert "model_load_failed" in result.stdout and "corrupt: sha256" in result.stdout


def test_kaizen_serve_command(tmp_path: Path) -> None:
    port = free_port()
    kaizen = Path(sys.executable).parent / "kaizen"
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen([str(kaizen), "serve", str(IRIS), "--port", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and answer is None:
            try:
                answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"instances": [ROW]}, timeout=2)
                if answer.status_code == 503:
                    answer = None
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        assert answer is not None and answer.json() == {"predictions": ["setosa"]}
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_bad_environment_is_named() -> None:
    result = subprocess.run([sys.executable, "-m", "model_packages.serving", "serve"], capture_output=True,
                            text=True, timeout=60, env={"PORT": "eighty", "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 2 and "PORT='eighty' is not an integer" in result.stderr


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("checks", "scope"),
    [
        # Schema-valid bodies must be accepted: the request schemas carry each feature's type and range.
        (CHECKS + ",positive_data_acceptance", ["--exclude-path-regex", "/infer$"]),
        # A V2 tensor's data length depends on its shape, which JSON Schema cannot say: no acceptance check.
        (CHECKS, ["--include-path-regex", "/infer$"]),
    ],
    ids=["instances-and-csv", "v2-infer"],
)
def test_schemathesis_finds_no_contract_violation(
    iris_server: RunningServer, tmp_path: Path, checks: str, scope: list[str]
) -> None:
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(binary), "run", iris_server.url + "/openapi.json", "--checks", checks, *scope,
         "--max-examples", "60", "--workers", "1", "--phases", "examples,coverage,fuzzing",
         "--suppress-health-check", "all", "--seed", "1"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1].lower()


def test_load_failure_is_one_json_line_not_a_traceback(iris_package: Path) -> None:
    package = broken.warm_up_fails(iris_package)
    result = subprocess.run([sys.executable, "-m", "model_packages.serving", "serve"], capture_output=True,
                            text=True, timeout=60, env={"KAIZEN_MODEL_DIR": str(package),
                                                        "KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(free_port()),
                                                        "PATH": "/usr/bin:/bin",
                                                        "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    failures = [json.loads(line) for line in result.stdout.splitlines() if "model_load_failed" in line]
    assert len(failures) == 1, result.stdout + result.stderr
    assert "ValueError" in failures[0]["error"] and "warm-up" in failures[0]["error"]
    kaizen = Path(sys.executable).parent / "kaizen"
    serve = subprocess.run([str(kaizen), "serve", str(package), "--port", str(free_port())], capture_output=True,
                           text=True, timeout=60, check=False)
    assert serve.returncode == 1 and "Traceback" not in serve.stdout + serve.stderr
    assert sum("model_load_failed" in line for line in serve.stdout.splitlines()) == 1
    inspect = subprocess.run([str(kaizen), "inspect", str(package), "--load"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert inspect.returncode == 1 and "Traceback" not in inspect.stdout + inspect.stderr
    assert "ValueError" in inspect.stderr
