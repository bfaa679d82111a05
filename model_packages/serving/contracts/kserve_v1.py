"""KServe's V1 protocol: `GET /v1/models/{model}` (ready) and `POST /v1/models/{model}:predict` (as `/predict`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_packages.serving.contracts import vertex
from model_packages.serving.messages import Request, Response, json_response

if TYPE_CHECKING:
    from model_packages.serving.app import App


def model_ready(app: App, request: Request) -> Response:
    name = request.params["model"]
    app.check_model(name)
    return json_response(200, {"name": name, "ready": True})


def predict(app: App, request: Request) -> Response:
    app.check_model(request.params["model"])
    return vertex.predict(app, request)
