"""Save the benchmark model in a peer's own format. Runs inside that peer's virtualenv.

    <peer venv>/bin/python bench/serving/peer_models.py PEER MODEL.joblib OUT_DIR MODEL_NAME

PEER is mlflow, bentoml or mlserver. The model was trained once by run.py (project venv) and
dumped with joblib; every venv has the same scikit-learn, so all peers serve the same estimator.
"""
# pyright: reportMissingImports=false

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import joblib
import numpy as np


def save_mlflow(model: object, sample: np.ndarray, out: Path) -> None:
    import mlflow.sklearn as mlflow_sklearn
    from mlflow.models import infer_signature

    target = out / "mlflow-model"
    if target.exists():
        shutil.rmtree(target)
    # A tensor signature: MLflow validates the input shape/dtype, and `{"instances": [[...]]}`
    # is accepted as is.
    signature = infer_signature(sample, model.predict(sample))  # type: ignore[attr-defined]
    mlflow_sklearn.save_model(model, str(target), signature=signature, serialization_format="cloudpickle")


def save_bentoml(model: object, out: Path, name: str) -> None:
    import bentoml

    bentoml.sklearn.save_model(name, model)
    shutil.copyfile(Path(__file__).with_name("bento_service.py"), out / "bento_service.py")


def save_mlserver(model: object, out: Path, name: str, sample: np.ndarray) -> None:
    target = out / "mlserver-artifact"
    target.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, target / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, int(sample.shape[1])]}],
    }
    (target / "model-settings.json").write_text(json.dumps(settings, indent=2))


def main() -> None:
    peer, model_path, out_dir, name = sys.argv[1:5]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = joblib.load(model_path)
    sample = np.load(Path(model_path).with_name("sample.npy"))
    if peer == "mlflow":
        save_mlflow(model, sample, out)
    elif peer == "bentoml":
        save_bentoml(model, out, name)
    elif peer == "mlserver":
        save_mlserver(model, out, name, sample)
    else:
        raise SystemExit(f"unknown peer {peer!r}")


if __name__ == "__main__":
    main()
