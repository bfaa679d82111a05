"""SageMaker's container contract: `GET /ping` (readiness) and `POST /invocations`, JSON or CSV in and out.

MLflow's scoring protocol (`dataframe_split`, `dataframe_records`, `inputs`; `params`) arrives on the
same route from MLflow clients: `codecs.instances_of` reads every shape, and the route's errors carry
MLflow's `error_code` (`Route.mlflow_errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model_packages.serving import codecs
from model_packages.serving.messages import Request, Response, json_response, require_json

if TYPE_CHECKING:
    from model_packages.serving.app import App


def invocations(app: App, request: Request) -> Response:
    runner = app.ready_runner()
    if request.content_type == "text/csv":
        rows = codecs.rows_from_csv(request.body, runner.schema)
        parameters: dict[str, Any] = {}
    else:
        require_json(request, also="text/csv")
        instances, key, parameters = codecs.instances_of(codecs.parse_json(request.body))
        app.check_rows(len(instances) if isinstance(instances, list) else 0)
        rows = runner.schema.matrix(instances, field=key)
    app.check_rows(rows.shape[0])
    request.rows = rows.shape[0]
    if parameters.get("probabilities") is True:
        predictions: list[Any] = runner.predictions_with_probabilities(rows)
    else:
        predictions = runner.predict(rows)
    accept = request.headers.get(b"accept", b"").decode("latin-1")
    if "text/csv" in accept and "application/json" not in accept:
        return Response(200, codecs.to_csv(predictions), "text/csv")
    return json_response(200, {"predictions": predictions})
