"""What every target probes or scrapes: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_packages.serving.messages import Request, Response, error_response, json_response
from model_packages.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from model_packages.serving.app import App


def live(app: App, request: Request) -> Response:
    return json_response(200, {"status": "alive"})


def ready(app: App, request: Request) -> Response:
    """200 once the model is loaded and warmed (every worker's, with several), 503 before and while draining."""
    reason = app.readiness()
    if reason is not None:
        return error_response(503, reason)
    return json_response(200, {"status": "ready", "model": app.model_name, "version": app.model_version})


def metrics(app: App, request: Request) -> Response:
    return Response(200, app.metrics.render(), METRICS_CONTENT_TYPE)


def openapi(app: App, request: Request) -> Response:
    return Response(200, app.openapi)
