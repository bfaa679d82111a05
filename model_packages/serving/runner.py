"""The small layer between HTTP and the model: validate, observe for drift, predict, shape output."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from model_packages.baseline import typical_row
from model_packages.errors import PackageError, RequestError
from model_packages.loading import LoadedModel, load_model
from model_packages.manifest import Manifest
from model_packages.serving.codecs import to_json_values
from model_packages.serving.drift import DriftConfig, DriftMonitor
from model_packages.serving.schema import InputSchema
from model_packages.serving.tensors import TensorSchema


class Runner:
    """Runs validated rows through a loaded model."""

    def __init__(self, model: LoadedModel, drift: DriftMonitor) -> None:
        self.model = model
        self.manifest: Manifest = model.manifest
        self.schema = TensorSchema(model.manifest) if model.manifest.tensor_input else InputSchema(model.manifest)
        self.drift = drift
        self.labels = [str(label) for label in model.manifest.output.labels or []]
        self.keep_seen = False  # data capture on: remember this thread's last rows and predictions
        self._seen = threading.local()

    def predict_array(self, rows: np.ndarray) -> np.ndarray:
        """Predict and feed the drift statistics (the one place both happen)."""
        predictions = _finite(self.model.predict(rows), "prediction")
        self.drift.observe(rows, predictions)
        if self.keep_seen:
            self._seen.value = (rows, predictions)
        return predictions

    def take_seen(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows and predictions this thread's request produced (once), for data capture."""
        seen = getattr(self._seen, "value", None)
        self._seen.value = None
        return seen

    def predict(self, rows: np.ndarray) -> list[Any]:
        return to_json_values(self.predict_array(rows))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray | None:
        proba = self.model.predict_proba(rows)
        return None if proba is None else _finite(proba, "probability")

    def predictions_with_probabilities(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Vertex-style rich predictions: the label and the probability of every label."""
        labels = self.predict(rows)
        proba = self.predict_proba(rows)
        if proba is None:
            return [{"label": label} for label in labels]
        return [
            {"label": label, "probabilities": dict(zip(self.labels, p, strict=False))}
            for label, p in zip(labels, proba.tolist(), strict=True)
        ]

    def warm_up(self) -> None:
        """Predict one typical row (training medians), so the first request pays no lazy costs."""
        if isinstance(self.schema, TensorSchema):
            self._check_answers(self.schema.warm_up_batch())
            return
        if self.manifest.input_example:
            self._check_answers(self.schema.matrix([list(r) for r in self.manifest.input_example]))
            return
        self._check_answers(self.schema.matrix([typical_row(self.manifest)]))

    def _check_answers(self, matrix: np.ndarray) -> None:
        predicted = to_json_values(self.model.predict(matrix))
        proba = self.model.predict_proba(matrix)
        if self.manifest.output.task == "classification":
            unknown = [p for p in predicted if str(p) not in self.labels]
            if unknown:
                raise PackageError(
                    f"schema/artifact disagreement: the model predicts {str(unknown[0])!r}, "
                    f"which is not in output.labels {self.labels}"
                )
            if proba is not None and proba.shape[1] != len(self.labels):
                raise PackageError(
                    f"schema/artifact disagreement: the model gives {proba.shape[1]} probabilities "
                    f"for {len(self.labels)} output.labels"
                )


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """Refuse a non-finite model output (e.g. 1e308 into a regressor gives inf): the input is
    outside what the model can answer, so it is the client's error, on every content type."""
    if values.dtype.kind in "fc":
        finite = np.isfinite(values)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            row = where[0]
            raise RequestError(
                f"row {row}: the model's {what} is {values[where]!s} for this input (not finite); "
                "send values within the range the model was trained on",
                status=400, field=f"row[{row}]",
            )
    return values


def load_runner(
    package_dir: str | Path,
    *,
    verify: bool = True,
    serve_with: str | None = None,
    drift: DriftConfig | None = None,
    share_dir: Path | None = None,
    worker: int = 0,
) -> Runner:
    """Load, check and warm up a package: every failure is one PackageError naming the problem.

    The model's own errors (a scikit-learn ValueError at warm-up, an import that calls sys.exit)
    become PackageError too, so `kaizen serve`, the image and `kaizen inspect --load` report one
    line and exit non-zero instead of printing a traceback."""
    try:
        model = load_model(package_dir, verify=verify, serve_with=serve_with)
        monitor = DriftMonitor(model.manifest, drift, share_dir=share_dir, worker=worker)
        runner = Runner(model, monitor)
        runner.warm_up()
    except PackageError:
        raise
    except (Exception, SystemExit) as error:
        detail = str(error) or "no message"
        kind = "tried to exit the process" if isinstance(error, SystemExit) else type(error).__name__
        raise PackageError(f"the model in {package_dir} failed to load or predict one warm-up row: "
                           f"{kind}: {detail}") from None
    return runner
