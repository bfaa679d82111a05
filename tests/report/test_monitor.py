"""`kaizen baseline export --format sagemaker`: Model Monitor's statistics.json and constraints.json."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.manifest import read_manifest
from tests.support import EXAMPLES

NUMERIC_STATS = {"common", "mean", "sum", "std_dev", "min", "max", "distribution"}


def export(package: Path, out: Path) -> tuple[dict, dict]:
    result = CliRunner().invoke(app, ["baseline", "export", str(package), "--format", "sagemaker", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "statistics.json").read_text()), json.loads((out / "constraints.json").read_text())


def test_numeric_package_statistics_and_constraints(tmp_path: Path) -> None:
    stats, constraints = export(EXAMPLES / "iris-classifier", tmp_path)
    manifest = read_manifest(EXAMPLES / "iris-classifier")
    assert stats["version"] == 0 and stats["dataset"] == {"item_count": manifest.baseline.rows}
    assert [f["name"] for f in stats["features"]] == manifest.feature_names
    for feature in stats["features"]:
        base = manifest.baseline.features[feature["name"]]
        assert feature["inferred_type"] == "Fractional"
        numeric = feature["numerical_statistics"]
        assert set(numeric) == NUMERIC_STATS
        assert numeric["common"] == {"num_present": base.count, "num_missing": base.missing}
        assert numeric["mean"] == base.mean and numeric["std_dev"] == base.std
        assert base.mean is not None and abs(numeric["sum"] - base.mean * base.count) < 1e-9
        kll = numeric["distribution"]["kll"]
        buckets = kll["buckets"]
        assert len(buckets) == len(base.bin_fractions)
        assert buckets[0]["lower_bound"] == base.min and buckets[-1]["upper_bound"] == base.max
        assert all(set(b) == {"lower_bound", "upper_bound", "count"} for b in buckets)
        assert all(a["upper_bound"] == b["lower_bound"] for a, b in itertools.pairwise(buckets))
        assert abs(sum(b["count"] for b in buckets) - base.count) < 1e-6
        assert set(kll["sketch"]["parameters"]) == {"c", "k"} and isinstance(kll["sketch"]["data"][0], list)
    assert constraints["version"] == 0
    config = constraints["monitoring_config"]
    assert config["evaluate_constraints"] == "Enabled" and config["emit_metrics"] == "Enabled"
    assert set(config["distribution_constraints"]) >= {"perform_comparison", "comparison_threshold",
                                                        "comparison_method"}
    for feature in constraints["features"]:
        assert feature["completeness"] == 1.0 and feature["num_constraints"] == {"is_non_negative": True}
        assert feature["monitoringConfigOverrides"] == {}


def test_string_features_have_categorical_buckets_and_domains(tmp_path: Path) -> None:
    package = EXAMPLES / "churn-classifier"
    manifest = read_manifest(package)
    stats, constraints = export(package, tmp_path)
    strings = [s for s in manifest.inputs if s.dtype == "categorical" and not s.numeric_categories]
    assert strings, "the churn example has string categoricals"
    by_name = {f["name"]: f for f in stats["features"]}
    for spec in strings:
        feature = by_name[spec.name]
        assert feature["inferred_type"] == "String" and "numerical_statistics" not in feature
        string = feature["string_statistics"]
        base = manifest.baseline.features[spec.name]
        assert string["common"]["num_present"] == base.count
        buckets = string["distribution"]["categorical"]["buckets"]
        assert {b["value"] for b in buckets} == set(base.category_fractions)
        assert string["distinct_count"] == len(base.category_fractions)
    domains = {f["name"]: f.get("string_constraints", {}).get("domains") for f in constraints["features"]}
    for spec in strings:
        assert domains[spec.name] == [str(c) for c in spec.categories or []]


def test_unknown_format_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["baseline", "export", str(EXAMPLES / "iris-classifier"), "--format", "csv",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "sagemaker" in result.output
    assert not (tmp_path / "o").exists()
