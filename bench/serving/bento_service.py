"""The minimal BentoML service of the serving benchmark (copied next to the model store).

`POST /predict` with `{"instances": [[...], ...]}` -> `{"predictions": [...]}`, like Kaizen.
"""
# pyright: reportMissingImports=false, reportUntypedFunctionDecorator=false

from __future__ import annotations

import os

import bentoml
import numpy as np

MODEL_TAG = os.environ.get("BENCH_BENTO_MODEL", "bench-clf:latest")


@bentoml.service(workers=int(os.environ.get("BENCH_BENTO_WORKERS", "1")))
class BenchClassifier:
    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(MODEL_TAG)

    # `async def`: the prediction (microseconds) runs on the event loop. A sync `def` would run
    # in BentoML's thread pool, and the GIL hand-off between that thread and the loop makes it
    # 2-3x slower here, so this is the faster of the two for BentoML.
    @bentoml.api
    async def predict(self, instances: list[list[float]]) -> dict[str, list[int]]:
        rows = np.asarray(instances, dtype=np.float64)
        return {"predictions": self.model.predict(rows).tolist()}
