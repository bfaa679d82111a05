"""Vertex AI's prediction contract, `{instances, parameters}` -> `{predictions}`: Kaizen's `/predict` on every target.

`parameters.probabilities: true` answers Vertex-style rich predictions (the label and every label's
probability). Azure ML and Cloud Run score on the same route (or one the platform names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_packages.serving import codecs
from model_packages.serving.messages import Request, Response, json_response, require_json

if TYPE_CHECKING:
    from model_packages.serving.app import App


def predict(app: App, request: Request) -> Response:
    runner = app.ready_runner()
    require_json(request)
    instances, key, parameters = codecs.instances_of(codecs.parse_json(request.body))
    app.check_rows(len(instances) if isinstance(instances, list) else 0)
    rows = runner.schema.matrix(instances, field=key)
    request.rows = rows.shape[0]
    if parameters.get("probabilities") is True:
        return json_response(200, {"predictions": runner.predictions_with_probabilities(rows)})
    return json_response(200, {"predictions": runner.predict(rows)})
