"""XGBoost and LightGBM packages: their own safe formats, the Booster at serving time, and a
compiled ONNX artifact checked on every training row; answers equal the framework's predict."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from typer.testing import CliRunner

from model_packages.cli import app
from model_packages.errors import PackageError
from model_packages.loading import load_model
from model_packages.manifest import read_manifest
from model_packages.package import create_package
from tests.support import broken

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
Y_BIN = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
Y_MULTI = np.array(["low", "mid", "high"])[np.digitize(X[:, 0] + 0.5 * X[:, 3], [-0.5, 0.5])]
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0]) + np.sin(X[:, 3]) * 3
FRESH = RNG.normal(size=(400, 4)) * 1.5

SMALL: dict[str, Any] = {"n_estimators": 12, "max_depth": 3}


def _models() -> list[tuple[str, Any, np.ndarray]]:
    return [
        ("xgb-binary", xgboost.XGBClassifier(**SMALL).fit(X, Y_BIN), Y_BIN),
        ("xgb-multi", xgboost.XGBClassifier(**SMALL).fit(X, np.searchsorted(["high", "low", "mid"], Y_MULTI)),
         np.searchsorted(["high", "low", "mid"], Y_MULTI)),
        ("xgb-reg", xgboost.XGBRegressor(**SMALL).fit(X, Y_REG), Y_REG),
        ("lgb-binary", lightgbm.LGBMClassifier(**SMALL, verbose=-1).fit(X, Y_BIN), Y_BIN),
        ("lgb-multi", lightgbm.LGBMClassifier(**SMALL, verbose=-1).fit(X, Y_MULTI), Y_MULTI),
        ("lgb-reg", lightgbm.LGBMRegressor(**SMALL, verbose=-1).fit(X, Y_REG), Y_REG),
    ]


@pytest.mark.parametrize(("name", "model", "y"), _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_sklearn_api_packages(tmp_path: Path, name: str, model: Any, y: np.ndarray) -> None:
    package = create_package(model, X, y, out_dir=tmp_path / name, name=name, version="1.0.0")
    manifest = read_manifest(package)
    framework = "xgboost" if name.startswith("xgb") else "lightgbm"
    assert manifest.framework == framework
    artifact = package / manifest.artifact
    assert manifest.format == ("ubj" if framework == "xgboost" else "txt")
    assert not zipfile.is_zipfile(artifact) and b"\x80\x04" not in artifact.read_bytes()[:2]  # no pickle
    assert manifest.compilation is not None and manifest.compilation.compiled, manifest.compilation
    compiled, source = load_model(package), load_model(package, serve_with="source")
    assert type(compiled).__name__ == "OnnxModel" and type(source).__name__ == "BoosterModel"
    want = model.predict(FRESH)
    for loaded in (compiled, source):
        got = loaded.predict(FRESH)
        if manifest.output.task == "classification":
            assert [str(v) for v in got] == [str(v) for v in want]
            proba = loaded.predict_proba(FRESH)
            assert proba is not None and np.allclose(proba, model.predict_proba(FRESH), atol=1e-5)
        else:
            assert np.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_native_boosters_and_cli(tmp_path: Path) -> None:
    """Boosters trained with the native APIs, saved in their own formats, packaged by the CLI."""
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                            xgboost.DMatrix(X, label=np.searchsorted(["high", "low", "mid"], Y_MULTI)), 10)
    lgb = lightgbm.train({"objective": "regression", "verbose": -1, "num_leaves": 7},
                         lightgbm.Dataset(X, label=Y_REG), 10)
    booster.save_model(tmp_path / "model.ubj")
    lgb.save_model(tmp_path / "model.txt")
    data = tmp_path / "train.csv"
    data.write_text("a,b,c,d\n" + "\n".join(",".join(str(v) for v in row) for row in X))
    cases: list[tuple[Path, Any, str | None]] = [
        (tmp_path / "model.ubj", booster.predict(xgboost.DMatrix(FRESH)), "h,l,m"),
        (tmp_path / "model.txt", lgb.predict(FRESH), None),
    ]
    for artifact, expected, labels in cases:
        out = tmp_path / f"pkg-{artifact.suffix[1:]}"
        argv = ["package", str(artifact), "--data", str(data), "--name", "native", "--version", "1.0.0",
                "--out", str(out)]
        result = CliRunner().invoke(app, [*argv, "--labels", labels] if labels else argv)
        assert result.exit_code == 0, result.output
        assert "compiled: serving.onnx" in result.output
        manifest = read_manifest(out)
        for serve_with in ("compiled", "source"):
            loaded = load_model(out, serve_with=serve_with)
            if labels:
                assert manifest.output.labels == ["h", "l", "m"]
                assert loaded.predict(FRESH).tolist() == [["h", "l", "m"][i] for i in expected.argmax(axis=1)]
                assert np.allclose(loaded.predict_proba(FRESH), expected, atol=1e-5)  # type: ignore[arg-type]
            else:
                assert manifest.output.task == "regression"
                assert np.allclose(loaded.predict(FRESH), expected, rtol=1e-5, atol=1e-5)


def test_booster_refusals(tmp_path: Path) -> None:
    raw = xgboost.train({"objective": "multi:softmax", "num_class": 3}, xgboost.DMatrix(X, label=Y_BIN), 2)
    with pytest.raises(PackageError, match="does not predict probabilities"):
        create_package(raw, X, Y_BIN, out_dir=tmp_path / "softmax", name="s", version="1.0.0")
    model = xgboost.XGBClassifier(n_estimators=2).fit(X, Y_BIN)
    with pytest.raises(PackageError, match="does not belong to framework"):
        create_package(model, X, Y_BIN, out_dir=tmp_path / "pkl", name="p", version="1.0.0",
                       artifact_format="pickle", trusted=True)
    package = create_package(model, X, Y_BIN, out_dir=tmp_path / "ok", name="ok", version="1.0.0",
                             compile_onnx=False)
    with pytest.raises(PackageError, match="corrupt"):
        load_model(broken.hash_mismatch(package, b"{garbage"))
    wide = create_package(model, X, Y_BIN, out_dir=tmp_path / "w", name="w", version="1.0.0", compile_onnx=False)
    xgboost.XGBClassifier(n_estimators=2).fit(X[:, :3], Y_BIN).save_model(wide / "model.ubj")
    with pytest.raises(PackageError, match="the model takes 3 features"):
        load_model(wide, verify=False)


def test_image_flavor_follows_the_framework(tmp_path: Path) -> None:
    from model_packages.image.context import flavor_for

    model = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, Y_REG)
    plain = create_package(model, X, Y_REG, out_dir=tmp_path / "p", name="p", version="1.0.0", compile_onnx=False)
    fast = create_package(model, X, Y_REG, out_dir=tmp_path / "c", name="c", version="1.0.0")
    assert flavor_for(read_manifest(plain)) == "lightgbm"
    assert flavor_for(read_manifest(fast)) == "onnx"


def test_lightgbm_source_image_gets_libgomp_only_where_needed(tmp_path: Path) -> None:
    """The LightGBM wheel links the system libgomp1: the local bases have a variant with it built
    in (no apt in the image); other bases install it with apt-get, only for LightGBM images."""
    from model_packages.image.context import Bases, generate_context

    model = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, Y_REG)
    plain = create_package(model, X, Y_REG, out_dir=tmp_path / "p", name="p", version="1.0.0", compile_onnx=False)
    fast = create_package(model, X, Y_REG, out_dir=tmp_path / "c", name="c", version="1.0.0")
    local = generate_context(plain, tmp_path / "local", bases=Bases.local())
    text = local.dockerfile.read_text()
    assert local.bases == Bases("kaizen-base/python:3.11-bookworm-runtime-libgomp1",
                                "kaizen-base/python:3.11-bookworm-builder-libgomp1")
    assert "FROM kaizen-base/python:3.11-bookworm-runtime-libgomp1\n" in text and "apt-get" not in text
    upstream = generate_context(plain, tmp_path / "up", bases=Bases.upstream()).dockerfile.read_text()
    install = "apt-get install -y -qq --no-install-recommends libgomp1"
    assert upstream.count(install) == 2  # the builder (smoke import) and the image
    assert upstream.index(install) > upstream.index(" AS deps") and upstream.rindex(install) > upstream.rindex("FROM ")
    compiled = generate_context(fast, tmp_path / "compiled", bases=Bases.upstream())
    assert compiled.flavor == "onnx" and "apt-get" not in compiled.dockerfile.read_text()
    assert compiled.bases == Bases.upstream()
