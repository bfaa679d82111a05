"""Images of the new frameworks, one build each: a compiled tree ensemble (onnx flavor, <= 160 MB),
an XGBoost model served by XGBoost itself (xgboost flavor) and a LightGBM model served by LightGBM
(on the local base variant carrying libgomp1); answers in the container equal the framework's own
predict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import requests
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from model_packages.image.build import BuildResult
from model_packages.image.context import Bases
from model_packages.package import create_package

from .conftest import _build

pytestmark = pytest.mark.docker

DATA: Any = load_breast_cancer()
X, Y = DATA.data[:300], DATA.target[:300]
FRESH = DATA.data[300:]
FOREST = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0).fit(X, Y)
BOOSTER = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, Y)
LIGHT: Any = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, Y)


@pytest.fixture(scope="session")
def forest_image(docker_client: Any, bases: Bases, built_tags: list[str],
                 tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    package = create_package(FOREST, X, Y, out_dir=tmp_path_factory.mktemp("forest") / "pkg", name="forest",
                             version="1.0.0")
    return _build(docker_client, bases, package, "forest-compiled", built_tags)


@pytest.fixture(scope="session")
def xgboost_image(docker_client: Any, bases: Bases, built_tags: list[str],
                  tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    package = create_package(BOOSTER, X, Y, out_dir=tmp_path_factory.mktemp("xgb") / "pkg", name="xgb",
                             version="1.0.0", compile_onnx=False)
    return _build(docker_client, bases, package, "xgb-native", built_tags)


@pytest.fixture(scope="session")
def lightgbm_image(docker_client: Any, bases: Bases, built_tags: list[str],
                   tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    package = create_package(LIGHT, X, Y, out_dir=tmp_path_factory.mktemp("lgb") / "pkg", name="lgb",
                             version="1.0.0", compile_onnx=False)
    return _build(docker_client, bases, package, "lgb-native", built_tags)


def _answers(url: str, name: str) -> tuple[list[Any], list[Any]]:
    instances = requests.post(url + "/invocations", json={"instances": FRESH.tolist()}, timeout=10)
    assert instances.status_code == 200, instances.text
    v2 = {"inputs": [{"name": "input", "shape": list(FRESH.shape), "datatype": "FP64",
                      "data": FRESH.reshape(-1).tolist()}]}
    tensor = requests.post(url + f"/v2/models/{name}/infer", json=v2, timeout=10)
    assert tensor.status_code == 200, tensor.text
    return instances.json()["predictions"], tensor.json()["outputs"][0]["data"]


def test_compiled_tree_image(forest_image: BuildResult, runner: Callable[..., Any]) -> None:
    assert forest_image.labels["io.kaizen.lock"] == "onnx"
    assert forest_image.size <= 160e6, f"compiled tree image is {forest_image.size / 1e6:.1f} MB"
    with runner(forest_image.tag) as running:
        for got in _answers(running.url, "forest"):
            assert got == FOREST.predict(FRESH).tolist()


def test_xgboost_native_image(xgboost_image: BuildResult, runner: Callable[..., Any]) -> None:
    assert xgboost_image.labels["io.kaizen.lock"] == "xgboost"
    with runner(xgboost_image.tag, timeout=60) as running:
        for got in _answers(running.url, "xgb"):
            assert got == BOOSTER.predict(FRESH).tolist()
        proba = requests.post(running.url + "/invocations", timeout=10, json={
            "instances": FRESH[:5].tolist(), "parameters": {"probabilities": True}}).json()["predictions"]
        assert np.allclose([[p["probabilities"][k] for k in ("0", "1")] for p in proba],
                           BOOSTER.predict_proba(FRESH[:5]), atol=1e-6)


def test_lightgbm_native_image(lightgbm_image: BuildResult, runner: Callable[..., Any], docker_client: Any) -> None:
    """LightGBM's wheel links libgomp1: the image carries it (and the dpkg status says so)."""
    assert lightgbm_image.labels["io.kaizen.lock"] == "lightgbm"
    with runner(lightgbm_image.tag, timeout=60) as running:
        for got in _answers(running.url, "lgb"):
            assert got == LIGHT.predict(FRESH).tolist()
        proba = requests.post(running.url + "/invocations", timeout=10, json={
            "instances": FRESH[:5].tolist(), "parameters": {"probabilities": True}}).json()["predictions"]
        assert np.allclose([[p["probabilities"][k] for k in ("0", "1")] for p in proba],
                           LIGHT.predict_proba(FRESH[:5]), atol=1e-9)
    status = docker_client.containers.run(lightgbm_image.tag, entrypoint=["/opt/venv/bin/python", "-c",
                                          "print(open('/var/lib/dpkg/status').read())"], network_mode="host",
                                          remove=True).decode()
    assert "Package: libgomp1" in status
    print(f"\nimage size: lightgbm native {lightgbm_image.size / 1e6:.1f} MB")


def test_image_sizes_recorded(forest_image: BuildResult, xgboost_image: BuildResult, tmp_path: Path) -> None:
    """Sizes for the closing note (printed with -s); the compiled one is bounded above."""
    print(f"\nimage sizes: compiled forest {forest_image.size / 1e6:.1f} MB, "
          f"xgboost native {xgboost_image.size / 1e6:.1f} MB")
    assert forest_image.size < xgboost_image.size
