"""The image's second entry point: `batch` scores mounted files as a one-shot job (session images)."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.image.build import BuildResult
from model_packages.serving.runner import load_runner
from tests.image.conftest import RUN_ID
from tests.support import EXAMPLES

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _job(client: Any, image: str, data: Path, args: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """Run the image as a job over `data` mounted at /data (read-only root, non-root user)."""
    container = client.containers.run(
        image, command=["batch", *args], network_mode="host", read_only=True, tmpfs={"/tmp": "rw,size=16m"},
        volumes={str(data): {"bind": "/data", "mode": "rw"}}, detach=True,
        name=f"kaizen-test-batch-{RUN_ID}-{uuid.uuid4().hex[:6]}",
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        lines = [json.loads(line) for line in container.logs().decode().splitlines() if line.startswith("{")]
        return code, lines
    finally:
        container.remove(force=True)


def test_compiled_image_runs_as_a_batch_job(docker_client: Any, compiled_image: BuildResult, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image runs as a non-root user
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] * 40
    with (data / "in.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NAMES)
        writer.writerows(rows[:60])
        writer.writerow([1, 2, 150, 1])
        writer.writerows(rows[60:])
    (data / "in.jsonl").write_text("".join(json.dumps(dict(zip(NAMES, r, strict=True))) + "\n" for r in rows))

    code, lines = _job(docker_client, compiled_image.tag, data,
                       ["/data/in.csv", "/data/in.jsonl", "--out", "/data/out", "--chunk-rows", "50"])
    assert code == 0, lines
    assert lines[-1]["event"] == "batch_done" and (lines[-1]["rows"], lines[-1]["rejects"]) == (240, 1)
    expected = load_runner(EXAMPLES / "iris-classifier").predict(np.array(rows))
    for k in (0, 1):
        got = [r for part in sorted((data / "out" / "predictions").glob(f"{k:03d}-*/*.csv"))
               for r in list(csv.reader(part.open()))[1:]]
        assert [r[1] for r in got] == expected
    (reject,) = [json.loads(x) for x in (data / "out" / "rejects" / "000-in" / "000001.jsonl").open()]
    assert reject == {"input": "/data/in.csv", "row": 60, "reason": "petal_length: 150 is above the maximum 100"}

    code, lines = _job(docker_client, compiled_image.tag, data, ["/data/in.csv", "--out", "/data/out"])
    assert code == 2 and "different chunk_rows" in lines[-1]["error"]  # the run's output is not overwritten
    (data / "x.parquet").write_bytes(b"PAR1")
    code, lines = _job(docker_client, compiled_image.tag, data, ["/data/x.parquet", "--out", "/data/out2"])
    assert code == 2 and lines[-1]["event"] == "batch_failed" and "x.parquet" in lines[-1]["error"]


def test_local_batch_job_runs_the_image_over_stack_directories(
    compiled_image: BuildResult, tmp_path: Path, monkeypatch: Any
) -> None:
    """The local target's job provider (infra/local/batch.py) as `pulumi up` calls it."""
    from infra.local.batch import BatchRunProvider, fingerprint
    from model_packages.audit import trail

    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "day.csv").write_text(",".join(NAMES) + "\n" + "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n1,2,-1,1\n")
    props = {"scope": f"kaizen-test-{RUN_ID}", "image": compiled_image.tag, "input_dir": str(src),
             "output_dir": str(out), "inputs": ["day.csv"], "fingerprint": fingerprint(str(src), ["day.csv"]),
             "chunk_rows": 100, "probabilities": False, "timeout_minutes": 2}
    provider = BatchRunProvider()
    result = provider.create(props)
    outs = result.outs or {}
    assert (outs["rows"], outs["rejects"]) == (2, 1) and outs["rows_per_second"] > 0
    run_dir = Path(outs["output_path"])
    assert [r[1] for r in csv.reader((run_dir / "predictions" / "000-day" / "000000.csv").open())][1:] == \
        ["setosa", "virginica"]
    assert provider.read(result.id, outs).id == result.id
    (record,) = trail.read()
    assert record["event"] == "batch_run" and record["target"] == "local" and record["rows"] == 2
    assert provider.diff(result.id, outs, {**props, "fingerprint": "changed"}).replaces == ["fingerprint"]
