"""The churn example's pipeline: a DataFrame model (categorical plan, gaps in the numbers) retrained,
gated against its champion through the runtime's own loader, and packaged as a DataFrame package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from model_packages.audit import trail
from model_packages.errors import KaizenError
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.retrain.pipeline import load_pipeline
from model_packages.retrain.run import retrain
from model_packages.retrain.steps import package_candidate
from tests.support import EXAMPLES

PIPELINE = EXAMPLES / "churn_pipeline.py"
CHAMPION = EXAMPLES / "churn-classifier"


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    return tmp_path / "audit.jsonl"


def _churn_csv(path: Path, rows: int, seed: int) -> Path:
    spec = importlib.util.spec_from_file_location("kaizen_examples_train", EXAMPLES / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)  # the generator the example was trained from
    frame, churned = train.churn_frame(rows, seed=0)  # the example's own population, more of it
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["churned"] = churned.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame.to_csv(path, index=False)
    return path


def test_a_better_dataframe_candidate_is_packaged_with_its_categories_and_reruns_are_free(
    tmp_path: Path, audit: Path
) -> None:
    pipeline = load_pipeline(PIPELINE)
    data = _churn_csv(tmp_path / "new.csv", rows=2000, seed=1)
    weak_run = pipeline.run(data, cache_dir=tmp_path / "cache", params={"C": 1e-5},
                            context={"champion": CHAMPION, "work_dir": tmp_path / "work"}, until="gate")
    assert weak_run.executed == ["load", "validate", "split", "train", "gate"]
    weak = package_candidate(weak_run.outputs["train"], weak_run.outputs["split"],
                             {"promote": True, "metric": "accuracy", "challenger": 0.0}, CHAMPION,
                             tmp_path / "weak", {"C": 1e-5})
    assert read_manifest(weak).model_input == "dataframe"

    out = tmp_path / "packages"
    strong = retrain(pipeline, data, weak, out, cache_dir=tmp_path / "cache")
    assert strong.promoted, strong.report.read_text()
    assert strong.package == out / "churn-classifier" / "1.0.2"
    assert strong.package is not None
    manifest = read_manifest(strong.package)
    plan = next(spec for spec in manifest.inputs if spec.name == "plan")
    assert manifest.model_input == "dataframe" and plan.dtype == "categorical"
    assert sorted(plan.categories or []) == ["basic", "premium", "standard"]
    rows = np.array([[30.0, 70.0, "premium"], [np.nan, 55.5, "basic"]], dtype=object)
    assert set(np.asarray(load_model(strong.package).predict(rows)).ravel()) <= {"yes", "no"}

    again = retrain(pipeline, data, weak, out, cache_dir=tmp_path / "cache")
    assert again.run.executed == []
    assert read_manifest(out / "churn-classifier" / "1.0.2").artifact_sha256 == manifest.artifact_sha256
    assert [r["event"] for r in trail.read(audit)] == ["gate", "package", "gate", "package"]


def test_new_data_without_a_champion_column_is_refused_by_name(tmp_path: Path) -> None:
    data = _churn_csv(tmp_path / "new.csv", rows=200, seed=2)
    data.write_text(data.read_text().replace("plan", "tier", 1))
    with pytest.raises(KaizenError, match="lacks column 'plan'"):
        load_pipeline(PIPELINE).run(data, cache_dir=tmp_path / "cache",
                                    context={"champion": CHAMPION, "work_dir": tmp_path / "w"}, until="gate")
