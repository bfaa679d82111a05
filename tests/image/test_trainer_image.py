"""The trainer image (`kaizen build-trainer`): built for real on the local bases, it runs the iris
pipeline's `kaizen retrain` as uid 10001 without network on a tiny data set, and the run it
records inside replays outside the image to the same bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from model_packages.image.context import Bases
from model_packages.image.trainer import TrainerError, build_trainer, generate_trainer_context
from model_packages.reproducible import replay
from tests.image.conftest import RUN_ID
from tests.retrain.test_pipeline import _iris_csv
from tests.retrain.test_reproducible import _weak_iris_champion
from tests.support import EXAMPLES

PIPELINE = EXAMPLES / "iris_pipeline.py"


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("KAIZEN_CODE_REVISION", raising=False)


def test_the_context_holds_the_pipeline_the_lock_and_a_non_root_entrypoint(tmp_path: Path) -> None:
    ctx = generate_trainer_context(PIPELINE, tmp_path / "ctx", bases=Bases.local())
    dockerfile = ctx.dockerfile.read_text()
    assert (ctx.directory / "code/opt/kaizen/pipeline.py").read_bytes() == PIPELINE.read_bytes()
    assert (ctx.directory / "requirements.lock").read_text().count("--hash=sha256:") == 40
    assert "USER 10001:10001" in dockerfile and 'ENTRYPOINT ["kaizen"]' in dockerfile
    assert "--require-hashes" in dockerfile and "--no-index" in dockerfile
    assert not (ctx.directory / "code/opt/kaizen/lib/model_packages/ci").exists()
    assert ctx.labels["io.kaizen.trainer.pipeline-sha256"] == hashlib.sha256(PIPELINE.read_bytes()).hexdigest()
    bad = tmp_path / "bad.py"
    bad.write_text("from model_packages.retrain import Pipeline\npipeline = Pipeline('x')\n")
    with pytest.raises(TrainerError, match="needs a `gate` and a `package` step"):
        generate_trainer_context(bad, tmp_path / "bad-ctx", bases=Bases.local())
    assert not (tmp_path / "bad-ctx").exists()


def test_the_trainer_image_retrains_inside_and_the_run_replays_outside(
    docker_client: Any, bases: Bases, built_tags: list[str], tmp_path: Path
) -> None:
    tag = f"kaizen-test/iris-trainer:{RUN_ID}"
    result = build_trainer(PIPELINE, bases=bases, tag=tag, client=docker_client)
    built_tags.append(tag)
    config = docker_client.images.get(tag).attrs["Config"]
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["kaizen"]
    assert result.labels["io.kaizen.lock"] == "trainer"

    (tmp_path / "data").mkdir()
    data = _iris_csv(tmp_path / "data" / "new.csv", noise=0.05, rows=8)
    champion = _weak_iris_champion(tmp_path, data)
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # the container writes as uid 10001
    logs = docker_client.containers.run(
        tag, ["retrain", "/opt/kaizen/pipeline.py", "--data", "/data/new.csv", "--champion", "/champion",
              "--out", "/out", "--cache", "/tmp/cache"],
        volumes={str(tmp_path / "data"): {"bind": "/data", "mode": "ro"},
                 str(champion): {"bind": "/champion", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
        network_mode="none", read_only=True, tmpfs={"/tmp": "rw,size=512m"}, remove=True, stdout=True, stderr=False)
    summary = json.loads(logs.decode().strip().splitlines()[-1])
    assert summary["promoted"] is True and summary["package"] == "/out/iris-classifier/1.0.2"
    assert (out / "iris-classifier" / "1.0.2" / "model.skops").is_file()
    record = json.loads((out / "run.json").read_text())
    assert record["pipeline_file"] == "/opt/kaizen/pipeline.py" and record["code_revision"]
    # the run recorded inside the image, replayed here with the same inputs: the same bytes
    replayed = replay(out / "run.json", tmp_path / "host", data=data, champion=champion, pipeline_file=PIPELINE)
    assert replayed["identical"] is True and replayed["files"] == len(record["package"]["files"])
