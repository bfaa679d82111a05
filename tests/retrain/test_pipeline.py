"""The retraining pipeline of the iris example: cached by content, gated against the champion,
packaged only when the gate passes, every decision in the signed audit trail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from model_packages.audit import trail
from model_packages.cli import app
from model_packages.errors import KaizenError
from model_packages.manifest import read_manifest
from model_packages.retrain.pipeline import PipelineError, load_pipeline
from model_packages.retrain.run import champion_from_stack, package_files, retrain
from model_packages.retrain.steps import package_candidate
from tests.support import ROOT

PIPELINE = ROOT / "examples" / "iris_pipeline.py"
CHAMPION = ROOT / "examples" / "iris-classifier"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    return tmp_path / "audit.jsonl"


def _iris_csv(path: Path, *, noise: float = 0.0, seed: int = 0, rows: int = 3) -> Path:
    """Iris repeated `rows` times with measurement noise: more data than the champion saw."""
    data: Any = load_iris()
    rng = np.random.default_rng(seed)
    x = np.vstack([data.data] * rows)
    x = np.clip(x + rng.normal(scale=noise, size=x.shape), 0, 100)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["species"] = np.tile(data.target_names[data.target], rows)
    frame.to_csv(path, index=False)
    return path


def test_rerun_executes_no_step_and_a_parameter_change_reruns_only_its_dependents(tmp_path: Path) -> None:
    pipeline = load_pipeline(PIPELINE)
    data = _iris_csv(tmp_path / "new.csv", noise=0.1)
    context = {"champion": CHAMPION, "work_dir": tmp_path / "work"}
    first = pipeline.run(data, cache_dir=tmp_path / "cache", context=context, until="gate")
    assert first.executed == ["load", "validate", "split", "train", "gate"]
    again = pipeline.run(data, cache_dir=tmp_path / "cache", context={**context, "work_dir": tmp_path / "w2"},
                         until="gate")
    assert again.executed == [] and again.keys == first.keys
    changed = pipeline.run(data, cache_dir=tmp_path / "cache", context=context, params={"C": 0.5}, until="gate")
    assert changed.executed == ["train", "gate"] and changed.cached == ["load", "validate", "split"]
    assert changed.version != first.version


def test_a_worse_candidate_is_rejected_with_a_report_and_an_audit_record_and_no_package(
    tmp_path: Path, audit: Path
) -> None:
    data = _iris_csv(tmp_path / "same.csv")  # the same data: the candidate cannot be shown to be better
    out = tmp_path / "packages"
    result = CliRunner().invoke(app, ["retrain", str(PIPELINE), "--data", str(data), "--champion", str(CHAMPION),
                                      "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["promoted"] is False
    assert (out / "gate-report.md").read_text().startswith("# Promotion gate: REJECT")
    assert not (out / "iris-classifier").exists()
    assert [r["event"] for r in trail.read(audit)] == ["gate"]


def _weak_champion(tmp_path: Path) -> tuple[Any, Path, Path]:
    """The pipeline, new data, and a weak champion (heavily regularised) packaged as 1.0.1, so a
    normally trained candidate is genuinely better."""
    pipeline = load_pipeline(PIPELINE)
    data = _iris_csv(tmp_path / "new.csv", noise=0.05, rows=8)
    run = pipeline.run(data, cache_dir=tmp_path / "cache", params={"C": 1e-4},
                       context={"champion": CHAMPION, "work_dir": tmp_path / "work"}, until="gate")
    weak = package_candidate(run.outputs["train"], run.outputs["split"],
                             {"promote": True, "metric": "accuracy", "challenger": 0.0},
                             CHAMPION, tmp_path / "weak", {"C": 1e-4})
    return pipeline, data, weak


def test_a_better_candidate_becomes_the_next_version_and_reruns_are_free(tmp_path: Path, audit: Path) -> None:
    pipeline, data, weak = _weak_champion(tmp_path)
    out = tmp_path / "packages"
    strong = retrain(pipeline, data, weak, out, cache_dir=tmp_path / "cache")
    assert strong.promoted, strong.report.read_text()
    assert strong.package == out / "iris-classifier" / "1.0.2"
    assert strong.package is not None
    assert (out / "gate-report.md").read_text().startswith("# Promotion gate: PROMOTE")
    artifact = read_manifest(strong.package).artifact_sha256
    again = retrain(pipeline, data, weak, out, cache_dir=tmp_path / "cache")
    assert again.run.executed == [] and read_manifest(out / "iris-classifier" / "1.0.2").artifact_sha256 == artifact
    assert [r["event"] for r in trail.read(audit)] == ["gate", "package", "gate", "package"]
    assert json.loads((out / "run.json").read_text())["cached"][-1] == "package"


def test_the_champion_is_what_the_stack_serves_not_the_latest_package(tmp_path: Path) -> None:
    store = tmp_path / "packages" / "iris-classifier"
    for version in ("1.0.0", "1.0.1"):  # 1.0.1 was packaged but never deployed
        (store / version).mkdir(parents=True)
        (store / version / "kaizen.yaml").write_text("name: iris-classifier\n")
    served = {"modelName": "iris-classifier", "modelVersion": "1.0.0"}
    assert champion_from_stack(served, tmp_path / "packages") == store / "1.0.0"
    with pytest.raises(KaizenError, match=r"1\.0\.7 is not in the package store"):
        champion_from_stack({**served, "modelVersion": "1.0.7"}, tmp_path / "packages")
    with pytest.raises(KaizenError, match="deploy a model first"):
        champion_from_stack({}, tmp_path / "packages")


def test_v3_is_gated_against_the_deployed_v1_and_never_overwrites_the_undeployed_v2(
    tmp_path: Path, audit: Path
) -> None:
    """v1 (1.0.1, weak) is what the stack serves, v2 (1.0.2) was packaged and never deployed: the
    candidate is gated against v1 and becomes 1.0.3; v2 is left as it was, and a re-run is free."""
    pipeline, data, weak = _weak_champion(tmp_path)
    store = tmp_path / "packages"
    v1 = store / "iris-classifier" / "1.0.1"
    shutil.copytree(weak, v1)
    v2 = retrain(pipeline, _iris_csv(tmp_path / "other.csv", noise=0.3, rows=4), v1, store,
                 cache_dir=tmp_path / "cache-v2")
    assert v2.promoted and v2.package == store / "iris-classifier" / "1.0.2"
    v2_files = package_files(store / "iris-classifier" / "1.0.2")
    served = {"modelName": "iris-classifier", "modelVersion": "1.0.1"}  # v2 was never deployed
    champion = champion_from_stack(served, store)
    v3 = retrain(pipeline, data, champion, store, cache_dir=tmp_path / "cache")
    assert v3.promoted and v3.package == store / "iris-classifier" / "1.0.3"
    assert package_files(store / "iris-classifier" / "1.0.2") == v2_files, "the undeployed v2 was changed"
    records = trail.read(audit)
    assert [r["champion"] for r in records if r["event"] == "gate"][-1] == "iris-classifier 1.0.1"
    assert [(r["version"], r["parent"]) for r in records if r["event"] == "package"][-1] == ("1.0.3", "1.0.1")
    again = retrain(pipeline, data, champion, store, cache_dir=tmp_path / "cache")
    assert again.package == v3.package and again.run.executed == []
    assert not (store / "iris-classifier" / "1.0.4").exists()


def test_data_that_does_not_fit_the_schema_names_the_column(tmp_path: Path) -> None:
    pipeline = load_pipeline(PIPELINE)
    frame = pd.read_csv(_iris_csv(tmp_path / "bad.csv"))
    frame.drop(columns=["petal_width"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(Exception, match="lacks column 'petal_width'"):
        pipeline.run(tmp_path / "missing.csv", cache_dir=tmp_path / "cache",
                     context={"champion": CHAMPION, "work_dir": tmp_path / "w"}, until="gate")
    frame.loc[5, "sepal_length"] = 1000.0
    frame.to_csv(tmp_path / "range.csv", index=False)
    with pytest.raises(Exception, match=r"'sepal_length': row 7 value 1000.0 is outside \[0.0, 100.0\]"):
        pipeline.run(tmp_path / "range.csv", cache_dir=tmp_path / "cache",
                     context={"champion": CHAMPION, "work_dir": tmp_path / "w"}, until="gate")
    with pytest.raises(PipelineError, match="unknown pipeline parameter gamma"):
        pipeline.run(tmp_path / "range.csv", cache_dir=tmp_path / "cache", params={"gamma": 1})


def test_lineage_walks_image_package_run_data_parent_and_exports_openlineage(tmp_path: Path, audit: Path) -> None:
    from model_packages.audit import lineage, provenance

    pipeline, data, weak = _weak_champion(tmp_path)
    out = tmp_path / "packages"
    strong = retrain(pipeline, data, weak, out, cache_dir=tmp_path / "cache")
    assert strong.package is not None
    card = json.loads((strong.package / "model-card.json").read_text())
    assert card["gate"]["promote"] is True and card["version"] == "1.0.2"
    assert "| petal_length | float |" in (strong.package / "model-card.md").read_text()
    image = "127.0.0.1:5000/kaizen/iris-classifier@sha256:" + "a" * 64
    provenance.record_push(image, {"io.kaizen.model.name": "iris-classifier", "io.kaizen.model.version": "1.0.2"})
    nodes = lineage.lineage(image, trail.read(audit), out)
    assert [n["kind"] for n in nodes] == ["image", "package", "training_run", "data", "package"]
    assert nodes[1]["data_sha256"] == read_manifest(strong.package).lineage.data_sha256
    assert nodes[3]["sha256"] == trail.read(audit)[0]["data_sha256"]
    assert nodes[4]["version"] == "1.0.1"  # the champion it was gated against
    events = lineage.openlineage_events(nodes)
    assert [e["job"]["name"] for e in events] == ["image-push", "retrain/iris-classifier"]
    assert events[1]["outputs"][0]["name"] == "package/iris-classifier/1.0.2"
    assert {i["name"] for i in events[1]["inputs"]} == {f"data/sha256:{nodes[3]['sha256']}",
                                                         "package/iris-classifier/1.0.1"}
    with pytest.raises(KaizenError, match="records no push"):
        lineage.lineage(image.replace("a" * 64, "b" * 64), trail.read(audit), out)
