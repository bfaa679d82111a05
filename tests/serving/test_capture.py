"""Data capture through the real runtime over HTTP: records, rotation, sampling, sensitive fields, full disks."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import RunningServer
from tests.support import EXAMPLES

IRIS = EXAMPLES / "iris-classifier"
ROW = [5.1, 3.5, 1.4, 0.2]
SECRET = 0.123456789  # a value that must never appear in any capture file or log line


def metric(server: RunningServer, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def stop(server: RunningServer) -> None:
    server.process.terminate()
    assert server.process.wait(timeout=15) == 0


def records(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.rglob("*.jsonl")):
        out.extend(json.loads(line) for line in path.read_text().splitlines())
    return out


def post(server: RunningServer, rows: list[list[float]], request_id: str | None = None) -> requests.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return requests.post(server.url + "/invocations", json={"instances": rows}, headers=headers, timeout=10)


@pytest.fixture
def sensitive_iris(tmp_path: Path) -> Path:
    """The example classifier with petal_width marked sensitive."""
    package = Path(shutil.copytree(IRIS, tmp_path / "iris-sensitive"))
    manifest = yaml.safe_load((package / "kaizen.yaml").read_text())
    for spec in manifest["inputs"]:
        if spec["name"] == "petal_width":
            spec["sensitive"] = True
    (package / "kaizen.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return package


def test_capture_records_rotate_atomically_and_stay_bounded(
        server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    where = tmp_path / "capture"
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(where),
                                   "KAIZEN_CAPTURE_MAX_FILE_BYTES": "4096",
                                   "KAIZEN_CAPTURE_MAX_TOTAL_BYTES": "20000"})
    for i in range(150):
        assert post(server, [ROW, [6.7, 3.0, 5.2, 2.3]], f"req-{i}").status_code == 200
    stop(server)
    files = sorted(where.rglob("*.jsonl"))
    assert len(files) >= 3, "4 KiB files must have rotated"
    assert not list(where.rglob("*.partial")), "shutdown renames the current file into place"
    assert all(f.stat().st_size <= 4096 for f in files)
    assert sum(f.stat().st_size for f in files) <= 20000, "the oldest files are deleted beyond the total"
    found = records(where)
    ids = [r["request_id"] for r in found]
    assert ids == sorted(ids, key=lambda x: int(x.split("-")[1])) and ids[-1] == "req-149"
    assert 0 < len(found) < 150  # the oldest were deleted
    last = found[-1]
    assert last["model"] == "iris-classifier" and last["version"] == "1.0.0" and last["route"] == "invocations"
    assert last["inputs"]["petal_length"] == [1.4, 5.2] and last["predictions"] == ["setosa", "virginica"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", last["time"])


def test_files_rotate_by_age(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    where = tmp_path / "capture"
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(where),
                                   "KAIZEN_CAPTURE_MAX_FILE_SECONDS": "1"})
    assert post(server, [ROW]).status_code == 200
    deadline = time.monotonic() + 5
    while not list(where.glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    files = list(where.glob("*.jsonl"))
    assert len(files) == 1 and len(records(where)) == 1, "a file older than 1 s is renamed into place"


def test_sampling_rate_within_binomial_bounds(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    where, rate, n = tmp_path / "capture", 0.3, 400
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": str(rate), "KAIZEN_CAPTURE_DIR": str(where),
                                   "KAIZEN_LOG_REQUESTS": "false"})
    for _ in range(n):
        assert post(server, [ROW]).status_code == 200
    stop(server)
    captured = len(records(where))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(captured - n * rate) <= 4 * sigma, (captured, n * rate, sigma)


def test_sagemaker_layout_and_record_shape(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    where = tmp_path / "capture"
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(where),
                                   "KAIZEN_CAPTURE_FORMAT": "sagemaker", "KAIZEN_CAPTURE_ENDPOINT": "iris-prod"})
    assert post(server, [ROW], "sm-1").status_code == 200
    stop(server)
    files = list(where.rglob("*.jsonl"))
    assert len(files) == 1
    relative = files[0].relative_to(where).as_posix()
    assert re.fullmatch(r"iris-prod/AllTraffic/\d{4}/\d\d/\d\d/\d\d/\d\d-\d\d-\d{3}-[0-9a-f-]{36}\.jsonl", relative)
    record = json.loads(files[0].read_text())
    capture = record["captureData"]
    assert capture["endpointInput"]["mode"] == "INPUT" and capture["endpointInput"]["encoding"] == "JSON"
    assert capture["endpointOutput"]["observedContentType"] == "application/json"
    assert json.loads(capture["endpointInput"]["data"]) == {"instances": [dict(zip(
        ["sepal_length", "sepal_width", "petal_length", "petal_width"], ROW, strict=True))]}
    assert json.loads(capture["endpointOutput"]["data"]) == {"predictions": ["setosa"]}
    assert record["eventMetadata"]["inferenceId"] == "sm-1" and record["eventVersion"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["eventMetadata"]["inferenceTime"])


def test_sensitive_fields_never_written(server_factory: Callable[..., RunningServer], sensitive_iris: Path,
                                        tmp_path: Path) -> None:
    where = tmp_path / "capture"
    for layout in ("kaizen", "sagemaker"):
        server = server_factory(sensitive_iris, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(where / layout),
                                                 "KAIZEN_CAPTURE_FORMAT": layout})
        assert post(server, [[5.1, 3.5, 1.4, SECRET]]).status_code == 200
        csv = requests.post(server.url + "/invocations", data=f"5.1,3.5,1.4,{SECRET}\n",
                            headers={"Content-Type": "text/csv"}, timeout=5)
        assert csv.status_code == 200
        too_big = post(server, [[5.1, 3.5, 1.4, 987654.25]])
        not_number = requests.post(server.url + "/invocations", data="5.1,3.5,1.4,secret-text-77\n",
                                   headers={"Content-Type": "text/csv"}, timeout=5)
        assert too_big.status_code == 400 and "petal_width" in too_big.json()["error"]
        assert "987654" not in too_big.text and "100" not in too_big.json()["error"]
        assert not_number.status_code == 400 and "secret-text-77" not in not_number.text
        stop(server)
        logs = server.logs()
        assert "987654" not in logs and "secret-text-77" not in logs and str(SECRET) not in logs
    for path in where.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert str(SECRET) not in text and "petal_width" not in text, path
    assert len(records(where / "kaizen")) == 2 and len(records(where / "sagemaker")) == 2
    assert set(records(where / "kaizen")[0]["inputs"]) == {"sepal_length", "sepal_width", "petal_length"}


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs: writes fail with ENOSPC once it is full."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_drops_samples_and_counts_them(server_factory: Callable[..., RunningServer],
                                                 tiny_filesystem: Path) -> None:
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(tiny_filesystem / "c"),
                                   "KAIZEN_CAPTURE_MAX_FILE_BYTES": str(1 << 20)})
    rows = [ROW] * 50
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(server, rows), range(200)))
    assert all(a.status_code == 200 for a in answers), "a full disk never fails a request"
    time.sleep(1.0)  # the writer thread catches up
    written = metric(server, "kaizen_capture_written_total")
    dropped = metric(server, "kaizen_capture_dropped_total")
    assert written > 0 and dropped > 0 and written + dropped == 200, (written, dropped)
    assert 'reason="write_error"' in requests.get(server.url + "/metrics", timeout=5).text
    stop(server)
    for line in records(tiny_filesystem / "c"):  # only whole records were left behind
        assert line["predictions"] == ["setosa"] * 50


def test_one_large_write_on_a_full_disk_keeps_the_chunks_that_fit(tiny_filesystem: Path) -> None:
    """All of a pass's records in one write call: the first chunks land, the rest are counted lost."""
    from model_packages.serving.capture import CHUNK_BYTES, DirectorySink, PartialWrite
    from model_packages.serving.settings import CaptureSettings

    sink = DirectorySink(CaptureSettings(rate=1.0, destination=str(tiny_filesystem / "c")), "t")
    line = json.dumps({"inputs": ["x" * 1000]})
    lines = [line] * 200  # ~200 KB: more than the 64 KiB disk holds, less than one capture file
    with pytest.raises(PartialWrite) as failure:
        sink.write(lines, time.time())
    assert 0 < failure.value.written < len(lines)
    assert failure.value.written >= CHUNK_BYTES // (len(line) + 1)
    sink.close()
    kept = [json.loads(x) for f in (tiny_filesystem / "c").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(kept) == failure.value.written and all(k["inputs"] == ["x" * 1000] for k in kept)


def test_unwritable_destination_never_fails_requests(server_factory: Callable[..., RunningServer],
                                                     tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the capture directory should be")
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(blocker / "c")})
    for _ in range(20):
        assert post(server, [ROW]).status_code == 200
    time.sleep(1.0)
    assert metric(server, "kaizen_capture_dropped_total") == 20
    assert metric(server, "kaizen_capture_written_total") == 0


def test_small_queue_counts_every_sample(server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = server_factory(IRIS, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(tmp_path / "c"),
                                   "KAIZEN_CAPTURE_QUEUE": "1", "KAIZEN_LOG_REQUESTS": "false"})
    big = [ROW] * 5000  # the writer formats 5000-row records slowly: the one-slot queue overflows
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(server, big), range(40)))
    assert all(a.status_code == 200 for a in answers)
    time.sleep(2.0)
    written = metric(server, "kaizen_capture_written_total")
    dropped = metric(server, "kaizen_capture_dropped_total")
    assert written + dropped == 40 and written >= 1
    assert os.path.isdir(tmp_path / "c")


def test_a_killed_writers_partial_file_is_put_in_place(server_factory: Callable[..., RunningServer],
                                                        tmp_path: Path) -> None:
    where = tmp_path / "capture"
    env = {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(where), "KAIZEN_CAPTURE_MAX_FILE_SECONDS": "1"}
    where.mkdir()
    stale = where / ".capture-20260101T000000Z-p1-00001.jsonl.partial"
    stale.write_text(json.dumps({"time": "2026-01-01T00:00:00.000000Z", "request_id": "old", "inputs": {},
                                 "predictions": []}) + "\n" + '{"time": "2026-01-01T00:00:01')  # cut mid-line
    os.utime(stale, (time.time() - 10, time.time() - 10))
    server = server_factory(IRIS, env)
    assert post(server, [ROW]).status_code == 200
    stop(server)
    recovered = where / "capture-20260101T000000Z-p1-00001.jsonl"
    assert not stale.exists() and recovered.is_file()
    assert [json.loads(x)["request_id"] for x in recovered.read_text().splitlines()] == ["old"]
