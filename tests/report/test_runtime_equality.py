"""The report's numbers equal the runtime's /metrics for the same rows (one drift implementation)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from model_packages.cli import app
from tests.conftest import RunningServer
from tests.report.conftest import shifted_rows

WINDOW = 500
PER_REQUEST = 10  # 2% of the window: requests this small are counted whole, never sampled


def gauges(text: str) -> dict[str, dict[str, float]]:
    """`kaizen_drift_*` samples: metric -> {feature label or "": value}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("kaizen_drift_"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        feature = labels.split('feature="', 1)[1].split('"', 1)[0] if 'feature="' in labels else ""
        out.setdefault(name, {})[feature] = float(value)
    return out


def test_report_json_equals_metrics_for_the_same_rows(server_factory: Callable[..., RunningServer], iris_pkg: Path,
                                                      tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    server = server_factory(iris_pkg, {"KAIZEN_CAPTURE_RATE": "1", "KAIZEN_CAPTURE_DIR": str(capture),
                                       "KAIZEN_DRIFT_WINDOW_ROWS": str(WINDOW), "KAIZEN_DRIFT_MIN_ROWS": "100",
                                       "KAIZEN_LOG_REQUESTS": "false"})
    before = gauges(requests.get(server.url + "/metrics", timeout=5).text)
    if "kaizen_drift_windows_total" not in before:
        pytest.skip("this runtime has no calibrated drift windows yet (the drift core's runtime wiring)")
    rows = shifted_rows(WINDOW, seed=5, shift=0.6).to_numpy().tolist()
    for start in range(0, WINDOW, PER_REQUEST):
        answer = requests.post(server.url + "/invocations", json={"instances": rows[start:start + PER_REQUEST]},
                               timeout=10)
        assert answer.status_code == 200
    deadline = time.monotonic() + 10
    while True:
        metrics = gauges(requests.get(server.url + "/metrics", timeout=5).text)
        if metrics["kaizen_drift_windows_total"][""] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metrics["kaizen_drift_windows_total"][""] == 1, "the 500 rows closed exactly one window"
    server.process.terminate()
    assert server.process.wait(timeout=15) == 0  # capture files complete
    alpha = metrics["kaizen_drift_false_alarm_probability"][""]
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["drift", "report", str(iris_pkg), str(capture), "--out", str(out),
                                      "--alpha", repr(alpha), "--min-rows", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["rows"] == WINDOW and report["predicted_rows"] == WINDOW
    features = report["features"]
    assert set(features) == set(metrics["kaizen_drift_psi"]) and "__prediction__" in features
    for name, feature in features.items():
        score = feature["score"]
        for key, metric in (("psi", "kaizen_drift_psi"), ("js", "kaizen_drift_js"),
                            ("statistic", "kaizen_drift_feature_statistic"),
                            ("threshold", "kaizen_drift_feature_threshold")):
            assert math.isclose(score[key], metrics[metric][name], rel_tol=1e-9, abs_tol=1e-12), (
                name, key, score[key], metrics[metric][name])
        if score["wasserstein"] is not None:
            assert math.isclose(score["wasserstein"], metrics["kaizen_drift_wasserstein"][name], rel_tol=1e-9)
    assert report["verdict"]["alarm"] == (metrics["kaizen_drift_alarm"][""] == 1.0)
    assert math.isclose(report["verdict"]["statistic"], metrics["kaizen_drift_statistic"][""], rel_tol=1e-9)
