"""The app: the route table (`routes.py`) behind one middleware, independent of the HTTP transport.

`App.handle(Request) -> Response` matches the route, then counts, times, logs and captures every
request in one place; the contracts' handlers (`contracts/`) read the served model from the `App`.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable

from model_packages.errors import RequestError
from model_packages.serving.capture import Capture
from model_packages.serving.logs import JsonLog
from model_packages.serving.messages import Request, Response, error_response
from model_packages.serving.metrics import RuntimeMetrics
from model_packages.serving.openapi import build_openapi
from model_packages.serving.router import Router
from model_packages.serving.routes import ROUTES, named_routes
from model_packages.serving.runner import Runner
from model_packages.serving.settings import Settings

REQUEST_ID_HEADERS = (b"x-request-id", b"x-amzn-requestid", b"x-ms-request-id", b"x-correlation-id")


class App:
    """Routes requests to the contracts' handlers; counts, times and logs each one."""

    def __init__(self, settings: Settings, log: JsonLog | None = None, metrics: RuntimeMetrics | None = None):
        self.settings = settings
        self.log = log or JsonLog()
        self.metrics = metrics or RuntimeMetrics()
        self.runner: Runner | None = None
        self.capture: Capture | None = None
        # None when ready, else why not (503): the model's lifecycle (`runtime.Runtime`) replaces this.
        self.readiness: Callable[[], str | None] = self._loaded
        self.model_name: str | None = None
        self.model_version: str | None = None
        self.openapi: bytes = b"{}"
        self.routes = ROUTES + named_routes(settings)
        self.router = Router(self.routes)

    def set_runner(self, runner: Runner) -> None:
        """Serve this loaded, warmed model: predictions are answered from now on."""
        manifest = runner.manifest
        self.model_name, self.model_version = manifest.name, manifest.version
        self.openapi = json.dumps(build_openapi(manifest, self.routes)).encode()
        self.metrics.model_loaded(manifest, runner.drift)
        self.log.fields.update(model=manifest.name, version=manifest.version)
        if self.settings.capture.enabled:
            self.capture = Capture(self.settings.capture, manifest, self.metrics.count_capture,
                                   write_lines=self.log.write_lines)
            runner.keep_seen = True
            self.log.event("capture", rate=self.settings.capture.rate, destination=self.settings.capture.destination,
                           layout=self.settings.capture.layout,
                           sensitive=[s.name for s in manifest.inputs if s.sensitive])
        self.runner = runner

    def close(self) -> None:
        """Finish data capture (what is queued is written, the current file renamed into place)."""
        if self.capture is not None:
            self.capture.close()

    # -- the one middleware ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = _request_id(request.headers)
        target, params = self.router.match(request.path)
        route = target.by_method.get(request.method) if target is not None else None
        named = route or (target.first if target is not None else None)  # names the request in metrics and logs
        name = named.name if named is not None else "not_found"
        self.metrics.in_flight.inc()
        try:
            if target is None:
                response = error_response(404, f"no route {request.path}")
            elif route is None:
                response = error_response(405, f"method {request.method} is not allowed on {request.path}")
                response.headers.append(("allow", target.allow))
            elif request.too_large:
                response = error_response(
                    413, f"request body exceeds {self.settings.max_body_bytes} bytes (KAIZEN_MAX_BODY_BYTES)"
                )
            else:
                if params:
                    request.params = params
                response = route.handler(self, request)
        except RequestError as error:
            response = error_response(error.status, error.message, mlflow=named is not None and named.mlflow_errors)
        except Exception as error:  # a bug, never bad input: answer 500 and log the trace
            self.log.event("error", request_id=request_id, route=name, error=repr(error),
                           trace=traceback.format_exc(limit=5))
            response = error_response(500, f"internal error: {type(error).__name__}")
        finally:
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.metrics.observe(name, response.status, elapsed)
        if request.rows:
            self.metrics.rows.inc(request.rows)
        response.headers.append(("x-request-id", request_id))
        if self.settings.log_requests and not (named is not None and named.quiet):
            self.log.event("request", request_id=request_id, method=request.method, route=name,
                           status=response.status, latency_ms=round(elapsed * 1000, 3), rows=request.rows)
        if self.capture is not None and self.runner is not None:
            seen = self.runner.take_seen()  # always taken, so a later request never captures stale rows
            if seen is not None and response.status == 200:
                self.capture.offer(request_id, name, seen[0], seen[1])
        return response

    # -- what the handlers ask of the served model ----------------------------------------------
    def ready_runner(self) -> Runner:
        """The loaded model, or 503."""
        if self.runner is None:
            raise RequestError("model is not loaded yet", status=503)
        return self.runner

    def check_rows(self, count: int) -> None:
        """413 above KAIZEN_MAX_ROWS."""
        if count > self.settings.max_rows:
            raise RequestError(f"request has {count} rows; the limit is {self.settings.max_rows} (KAIZEN_MAX_ROWS): "
                               "split the batch", status=413)

    def check_model(self, name: str, version: str | None = None) -> None:
        """404 unless `name` (and `version`, when given) is the model served here; 503 before it is loaded."""
        runner = self.ready_runner()
        if name != runner.manifest.name:
            raise RequestError(f"model {name!r} not found; this server serves {runner.manifest.name!r}", 404)
        if version is not None and version != runner.manifest.version:
            raise RequestError(
                f"version {version!r} of model {name!r} not found; this server serves {runner.manifest.version!r}",
                404,
            )

    def _loaded(self) -> str | None:
        return None if self.runner is not None else "model is not loaded yet"


def _request_id(headers: dict[bytes, bytes]) -> str:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            text = value.decode("latin-1")[:128]
            if text.isprintable():
                return text
    return os.urandom(8).hex()
