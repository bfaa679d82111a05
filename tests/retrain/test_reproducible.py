"""Bit-identical artifacts: a recorded run replayed in a fresh interpreter, directory and cache gives
the same bytes for every package file (skops + compiled ONNX for iris, ONNX for diabetes), and each
source of variation found between identical runs is fixed on its own."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_packages.package import _data_hash, create_package
from model_packages.reproducible import ZIP_EPOCH, ReplayError, code_revision, deterministic_onnx_bytes, replay
from model_packages.retrain.pipeline import load_pipeline
from model_packages.retrain.steps import package_candidate
from tests.retrain.test_pipeline import _iris_csv
from tests.support import EXAMPLES, ROOT


@pytest.fixture(autouse=True)
def audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_AUDIT_TRAIL", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KAIZEN_AUDIT_KEY", str(tmp_path / "key.pem"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("KAIZEN_CODE_REVISION", raising=False)
    return tmp_path / "audit.jsonl"


def _kaizen(*args: str, cwd: Path) -> dict[str, Any]:
    """`kaizen ARGS` in a fresh interpreter (its own hash seed and object ids) in `cwd`."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", "from model_packages.cli import main; main()", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _weak_iris_champion(tmp_path: Path, data: Path) -> Path:
    """A heavily regularised 1.0.1, so the normally trained candidate is genuinely better."""
    run = load_pipeline(EXAMPLES / "iris_pipeline.py").run(
        data, cache_dir=tmp_path / "champion-cache", params={"C": 1e-4}, until="gate",
        context={"champion": EXAMPLES / "iris-classifier", "work_dir": tmp_path / "champion-work"})
    return package_candidate(run.outputs["train"], run.outputs["split"],
                             {"promote": True, "metric": "accuracy", "challenger": 0.0},
                             EXAMPLES / "iris-classifier", tmp_path / "champion", {"C": 1e-4})


def _diabetes_csv(path: Path) -> Path:
    bunch: Any = load_diabetes(as_frame=True)
    bunch.frame.rename(columns={"target": "progression"}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("example", ["iris", "diabetes"])
def test_a_replayed_run_gives_the_same_bytes_for_every_package_file(tmp_path: Path, example: str) -> None:
    if example == "iris":
        data = _iris_csv(tmp_path / "new.csv", noise=0.05, rows=8)
        champion, pipeline = _weak_iris_champion(tmp_path, data), EXAMPLES / "iris_pipeline.py"
        artifacts = {"model.skops", "serving.onnx"}
    else:
        data = _diabetes_csv(tmp_path / "new.csv")
        champion, pipeline = EXAMPLES / "diabetes-regressor", EXAMPLES / "diabetes_pipeline.py"
        artifacts = {"model.onnx"}
    first = _kaizen("retrain", str(pipeline), "--data", str(data), "--champion", str(champion),
                    "--out", "packages", "--cache", "cache", cwd=tmp_path / "a")
    assert first["promoted"] is True
    run_json = tmp_path / "a" / "packages" / "run.json"
    record = json.loads(run_json.read_text())
    assert record["data_sha256"] and record["params"]["seed"] == 0 and record["seeds"] == {"seed": 0}
    assert record["code_revision"] == code_revision(EXAMPLES)  # the pipeline file's checkout
    again = _kaizen("retrain", "--replay", str(run_json), "--out", "replayed", cwd=tmp_path / "b")
    assert again["identical"] is True and again["package_hash"] == record["package"]["package_hash"]
    original = _files(tmp_path / "a" / first["package"])
    replayed = _files(tmp_path / "b" / again["package"])
    assert artifacts <= set(original) and {"kaizen.yaml", "model-card.json", "model-card.md"} <= set(original)
    assert original == replayed  # every file, byte for byte
    assert f"created_at: '{pd.Timestamp(record['source_date_epoch'], unit='s'):%Y-%m-%dT%H:%M:%SZ}'" in \
        original["kaizen.yaml"].decode()


def test_a_replay_refuses_other_data_and_reports_the_files_that_differ(tmp_path: Path) -> None:
    data = _diabetes_csv(tmp_path / "new.csv")
    first = _kaizen("retrain", str(EXAMPLES / "diabetes_pipeline.py"), "--data", str(data), "--champion",
                    str(EXAMPLES / "diabetes-regressor"), "--out", "packages", cwd=tmp_path / "a")
    run_json = tmp_path / "a" / "packages" / "run.json"
    other = tmp_path / "other.csv"
    pd.read_csv(data).iloc[:-1].to_csv(other, index=False)
    with pytest.raises(ReplayError, match=r"the data .* is not the one recorded"):
        replay(run_json, tmp_path / "b", data=other)
    record = json.loads(run_json.read_text())
    record["package"]["files"]["model.onnx"] = "0" * 64  # as if the recorded run had produced other bytes
    run_json.write_text(json.dumps(record))
    with pytest.raises(ReplayError, match=r"not bit-identical: model\.onnx differ"):
        replay(run_json, tmp_path / "c")
    assert first["promoted"] is True


def test_skops_files_of_equal_models_are_equal_bytes_with_fixed_zip_entries(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    paths = []
    for i, fitted in enumerate((model, copy.deepcopy(model))):  # equal models, other object ids
        out = create_package(fitted, x, y, out_dir=tmp_path / f"p{i}", name="m", version="1.0.0",
                             compile_onnx=False)
        paths.append(out / "model.skops")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as archive:
        infos = archive.infolist()
        schema = json.loads(archive.read("schema.json"))
    names = [i.filename for i in infos]
    assert names == sorted(names) and {i.date_time for i in infos} == {ZIP_EPOCH}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    ids = [int(m) for m in _values(schema, "__id__")]
    assert sorted(set(ids)) == list(range(len(set(ids))))  # renumbered 0..n-1 in traversal order
    assert sorted(_values(schema, "file")) == sorted(n for n in names if n != "schema.json")


def _values(node: Any, key: str) -> list[Any]:
    if isinstance(node, list):
        return [v for item in node for v in _values(item, key)]
    if isinstance(node, dict):
        return [v for k, item in node.items() for v in ([item] if k == key else _values(item, key))]
    return []


def test_onnx_graphs_get_content_names_and_sorted_opsets() -> None:
    import onnx

    from model_packages.compile import sklearn_to_onnx

    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    first, second = sklearn_to_onnx(model, 4), sklearn_to_onnx(model, 4)
    assert first == second
    graph = onnx.load_from_string(first)
    domains = [o.domain for o in graph.opset_import]
    assert domains == sorted(set(domains)) and graph.graph.name.startswith("g")
    scrambled = onnx.load_from_string(first)
    scrambled.graph.name = "0123456789abcdef0123456789abcdef"
    reversed_opsets = list(reversed(list(scrambled.opset_import)))
    del scrambled.opset_import[:]
    scrambled.opset_import.extend(reversed_opsets)
    assert deterministic_onnx_bytes(scrambled.SerializeToString()) == first


def test_the_data_hash_of_string_targets_hashes_values_not_pointers() -> None:
    columns = {"x": np.arange(3.0)}
    labels = ["setosa", "virginica", "setosa"]
    one = np.array(labels, dtype=object)
    other = np.array([str(s + " ")[:-1] for s in labels], dtype=object)  # equal strings, other objects
    assert one.tobytes() != other.tobytes()  # what the old hash read: addresses
    assert _data_hash(columns, one) == _data_hash(columns, other)
    assert _data_hash(columns, one) != _data_hash(columns, np.array(["setosa", "setosa", "setosa"], dtype=object))


def test_the_manifest_creation_time_is_source_date_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_packages.manifest import read_manifest

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = create_package(model, x, y, out_dir=tmp_path / "p", name="m", version="1.0.0", compile_onnx=False)
    assert read_manifest(out).lineage.created_at.isoformat() == "2023-11-14T22:13:20+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(Exception, match="SOURCE_DATE_EPOCH='yesterday' is not a whole number"):
        create_package(model, x, y, out_dir=tmp_path / "q", name="m", version="1.0.0", compile_onnx=False)
    assert not (tmp_path / "q").exists()


def test_a_pipeline_outside_git_records_no_revision_even_from_inside_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_packages.manifest import read_manifest
    from model_packages.retrain.run import retrain

    pipeline_file = tmp_path / "outside" / "diabetes_pipeline.py"  # not in any git checkout
    pipeline_file.parent.mkdir()
    pipeline_file.write_bytes((EXAMPLES / "diabetes_pipeline.py").read_bytes())
    monkeypatch.chdir(ROOT)  # the working directory is one
    data = _diabetes_csv(tmp_path / "new.csv")
    outcome = retrain(load_pipeline(pipeline_file), data, EXAMPLES / "diabetes-regressor", tmp_path / "packages",
                      cache_dir=tmp_path / "cache", pipeline_file=pipeline_file)
    assert outcome.package is not None
    assert read_manifest(outcome.package).lineage.code_revision is None
    assert json.loads((tmp_path / "packages" / "run.json").read_text())["code_revision"] is None
    again = replay(tmp_path / "packages" / "run.json", tmp_path / "replayed")
    assert again["identical"] is True


def test_a_cached_package_keeps_its_revision_and_a_replay_at_another_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_packages.manifest import read_manifest
    from model_packages.retrain.run import retrain

    pipeline_file, data = EXAMPLES / "diabetes_pipeline.py", _diabetes_csv(tmp_path / "new.csv")
    monkeypatch.setenv("KAIZEN_CODE_REVISION", "a" * 40)
    retrain(load_pipeline(pipeline_file), data, EXAMPLES / "diabetes-regressor", tmp_path / "packages",
            cache_dir=tmp_path / "cache", pipeline_file=pipeline_file)
    monkeypatch.setenv("KAIZEN_CODE_REVISION", "b" * 40)  # a later commit; every step is cached
    again = retrain(load_pipeline(pipeline_file), data, EXAMPLES / "diabetes-regressor", tmp_path / "packages",
                    cache_dir=tmp_path / "cache", pipeline_file=pipeline_file)
    assert again.run.executed == [] and again.package is not None
    record = json.loads((tmp_path / "packages" / "run.json").read_text())
    assert record["code_revision"] == read_manifest(again.package).lineage.code_revision == "a" * 40
    with pytest.raises(ReplayError, match=f"recorded at code revision {'a' * 40}; this checkout is {'b' * 40}"):
        replay(tmp_path / "packages" / "run.json", tmp_path / "replayed")
    assert not (tmp_path / "replayed").exists()
