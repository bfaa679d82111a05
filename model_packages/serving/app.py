"""The app: routes of every cloud's serving contract, independent of the HTTP transport."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_packages import __version__
from model_packages.errors import RequestError
from model_packages.serving import codecs, contract
from model_packages.serving.capture import Capture
from model_packages.serving.logs import JsonLog
from model_packages.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from model_packages.serving.metrics import RuntimeMetrics
from model_packages.serving.openapi import build_openapi
from model_packages.serving.runner import Runner
from model_packages.serving.settings import Settings

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HEALTH_ROUTES = frozenset({"ping", "live", "ready", "v2_live", "v2_ready", "health_custom", "live_custom", "metrics"})
REQUEST_ID_HEADERS = (b"x-request-id", b"x-amzn-requestid", b"x-ms-request-id", b"x-correlation-id")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    too_large: bool = False
    rows: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Response]


JSON_CHUNK = 1000  # list items per json.dumps call: one call holds the GIL, so big answers are encoded in pieces


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _dumps_list(items: list[Any]) -> str:
    if len(items) <= JSON_CHUNK:
        return _dumps(items)
    return "[" + ",".join(_dumps(items[i:i + JSON_CHUNK])[1:-1] for i in range(0, len(items), JSON_CHUNK)) + "]"


def json_response(status: int, payload: Any) -> Response:
    """Encode an answer; long `predictions` and V2 `data` lists in pieces, so health checks get the GIL between."""
    if isinstance(payload, dict):
        predictions = payload.get("predictions")
        outputs = payload.get("outputs")
        if isinstance(predictions, list) and len(predictions) > JSON_CHUNK:
            rest = {k: v for k, v in payload.items() if k != "predictions"}
            tail = "," + _dumps(rest)[1:-1] if rest else ""
            return Response(status, ('{"predictions":' + _dumps_list(predictions) + tail + "}").encode())
        if isinstance(outputs, list) and any(isinstance(o, dict) and len(o.get("data") or ()) > JSON_CHUNK
                                             for o in outputs):
            parts = []
            for output in outputs:
                data = output.get("data") if isinstance(output, dict) else None
                if isinstance(data, list):
                    meta = _dumps({k: v for k, v in output.items() if k != "data"})[1:-1]
                    parts.append("{" + meta + ("," if meta else "") + '"data":' + _dumps_list(data) + "}")
                else:
                    parts.append(_dumps(output))
            rest = _dumps({k: v for k, v in payload.items() if k != "outputs"})[1:-1]
            return Response(status, ("{" + rest + ("," if rest else "") + '"outputs":[' + ",".join(parts)
                                     + "]}").encode())
    return Response(status, _dumps(payload).encode())


def error_response(status: int, message: str, mlflow: bool = False) -> Response:
    """`{"error": ...}`; on /invocations also MLflow's `error_code`/`message`, which its callers read."""
    if mlflow:
        code = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 413: "BAD_REQUEST", 415: "BAD_REQUEST"}
        return json_response(status, {"error": message, "error_code": code.get(status, "INTERNAL_ERROR"),
                                      "message": message})
    return json_response(status, {"error": message})


class App:
    """Routes requests to handlers; counts, times and logs each one."""

    def __init__(self, settings: Settings, log: JsonLog | None = None, metrics: RuntimeMetrics | None = None):
        self.settings = settings
        self.log = log or JsonLog()
        self.metrics = metrics or RuntimeMetrics()
        self.runner: Runner | None = None
        self.capture: Capture | None = None
        self.draining = False  # SIGTERM received: readiness answers 503 so balancers stop sending
        self.peers_ready: Callable[[], bool] | None = None  # with several workers: are all of them ready?
        self.model_name: str | None = None
        self.model_version: str | None = None
        self.openapi: bytes = b"{}"
        self.routes: dict[str, dict[str, tuple[str, Handler]]] = {}
        self._add("GET", contract.PING_PATH, "ping", self.ready)
        self._add("GET", contract.LIVE_PATH, "live", self.live)
        self._add("GET", contract.READY_PATH, "ready", self.ready)
        self._add("POST", contract.INVOCATIONS_PATH, "invocations", self.invocations)
        self._add("POST", contract.PREDICT_PATH, "predict", self.predict)
        self._add("GET", contract.METRICS_PATH, "metrics", self.render_metrics)
        self._add("GET", "/openapi.json", "openapi", lambda _: Response(200, self.openapi))
        self._add("GET", "/v2", "v2_server", self.v2_server)
        self._add("GET", "/v2/health/live", "v2_live", self.live)
        self._add("GET", "/v2/health/ready", "v2_ready", self.ready)
        for path in settings.health_routes:
            self._add("GET", path, "health_custom", self.ready)
        for path in settings.liveness_routes:
            self._add("GET", path, "live_custom", self.live)
        for path in settings.predict_routes:
            self._add("POST", path, "predict_custom", self.predict)

    def _add(self, method: str, path: str, name: str, handler: Handler) -> None:
        self.routes.setdefault(path, {})[method] = (name, handler)

    def set_runner(self, runner: Runner) -> None:
        """Mark the model loaded and warmed: readiness turns 200."""
        manifest = runner.manifest
        self.model_name, self.model_version = manifest.name, manifest.version
        self.openapi = json.dumps(build_openapi(manifest, self.settings)).encode()
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

    # -- dispatch -------------------------------------------------------------------------------
    def _lookup(self, method: str, path: str) -> tuple[str, Handler | None, list[str]]:
        methods = self.routes.get(path)
        if methods is None and path.startswith("/v2/models/"):
            return self._v2_lookup(method, path)
        if methods is None and path.startswith("/v1/models/"):
            return self._v1_lookup(method, path)
        if methods is None:
            return "not_found", None, []
        if method in methods:
            return methods[method][0], methods[method][1], []
        if method == "HEAD" and "GET" in methods:
            return methods["GET"][0], methods["GET"][1], []
        return methods[next(iter(methods))][0], None, sorted(methods)

    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = _request_id(request.headers)
        route, handler, allowed = self._lookup(request.method, request.path)
        self.metrics.in_flight.inc()
        try:
            if handler is None and allowed:
                response = error_response(405, f"method {request.method} is not allowed on {request.path}")
                response.headers.append(("allow", ", ".join(allowed)))
            elif handler is None:
                response = error_response(404, f"no route {request.path}")
            elif request.too_large:
                response = error_response(
                    413, f"request body exceeds {self.settings.max_body_bytes} bytes (KAIZEN_MAX_BODY_BYTES)"
                )
            else:
                response = handler(request)
        except RequestError as error:
            response = error_response(error.status, error.message, mlflow=route == "invocations")
        except Exception as error:  # a bug, never bad input: answer 500 and log the trace
            self.log.event("error", request_id=request_id, route=route, error=repr(error),
                           trace=traceback.format_exc(limit=5))
            response = error_response(500, f"internal error: {type(error).__name__}")
        finally:
            self.metrics.in_flight.dec()
        elapsed = time.perf_counter() - started
        self.metrics.observe(route, response.status, elapsed)
        if request.rows:
            self.metrics.rows.inc(request.rows)
        response.headers.append(("x-request-id", request_id))
        if self.settings.log_requests and route not in HEALTH_ROUTES:
            self.log.event("request", request_id=request_id, method=request.method, route=route,
                           status=response.status, latency_ms=round(elapsed * 1000, 3), rows=request.rows)
        if self.capture is not None and self.runner is not None:
            seen = self.runner.take_seen()  # always taken, so a later request never captures stale rows
            if seen is not None and response.status == 200:
                self.capture.offer(request_id, route, seen[0], seen[1])
        return response

    def _check_rows(self, count: int) -> None:
        if count > self.settings.max_rows:
            raise RequestError(f"request has {count} rows; the limit is {self.settings.max_rows} (KAIZEN_MAX_ROWS): "
                               "split the batch", status=413)

    def _ready_runner(self) -> Runner:
        if self.runner is None:
            raise RequestError("model is not loaded yet", status=503)
        return self.runner

    # -- health ---------------------------------------------------------------------------------
    def live(self, _: Request) -> Response:
        return json_response(200, {"status": "alive"})

    def ready(self, _: Request) -> Response:
        if self.runner is None:
            return error_response(503, "model is not loaded yet")
        if self.draining:
            return error_response(503, "shutting down")
        if self.peers_ready is not None and not self.peers_ready():
            return error_response(503, "not every worker is ready yet")
        return json_response(200, {"status": "ready", "model": self.model_name, "version": self.model_version})

    def render_metrics(self, _: Request) -> Response:
        return Response(200, self.metrics.render(), METRICS_CONTENT_TYPE)

    # -- predictions ----------------------------------------------------------------------------
    def predict(self, request: Request) -> Response:
        runner = self._ready_runner()
        _require_json(request)
        instances, key, parameters = codecs.instances_of(codecs.parse_json(request.body))
        self._check_rows(len(instances) if isinstance(instances, list) else 0)
        rows = runner.schema.matrix(instances, field=key)
        request.rows = rows.shape[0]
        if parameters.get("probabilities") is True:
            return json_response(200, {"predictions": runner.predictions_with_probabilities(rows)})
        return json_response(200, {"predictions": runner.predict(rows)})

    def invocations(self, request: Request) -> Response:
        runner = self._ready_runner()
        ctype = request.content_type
        if ctype == "text/csv":
            rows = codecs.rows_from_csv(request.body, runner.schema)
            parameters: dict[str, Any] = {}
        else:
            _require_json(request, also="text/csv")
            instances, key, parameters = codecs.instances_of(codecs.parse_json(request.body))
            self._check_rows(len(instances) if isinstance(instances, list) else 0)
            rows = runner.schema.matrix(instances, field=key)
        self._check_rows(rows.shape[0])
        request.rows = rows.shape[0]
        if parameters.get("probabilities") is True:
            predictions: list[Any] = runner.predictions_with_probabilities(rows)
        else:
            predictions = runner.predict(rows)
        accept = request.headers.get(b"accept", b"").decode("latin-1")
        if "text/csv" in accept and "application/json" not in accept:
            return Response(200, codecs.to_csv(predictions), "text/csv")
        return json_response(200, {"predictions": predictions})

    # -- KServe V1 -------------------------------------------------------------------------------
    def _v1_lookup(self, method: str, path: str) -> tuple[str, Handler | None, list[str]]:
        """`GET /v1/models/{m}` (ready) and `POST /v1/models/{m}:predict` ({"instances"} -> {"predictions"})."""
        name, _, verb = path[len("/v1/models/"):].partition(":")
        if not name or "/" in name or verb not in ("", "predict"):
            return "not_found", None, []
        expected, route = ("POST", "v1_predict") if verb == "predict" else ("GET", "v1_model")
        if method != expected and not (method == "HEAD" and expected == "GET"):
            return route, None, [expected]

        def bound(request: Request) -> Response:
            self._check_v2_model(name, None)
            if verb == "predict":
                return self.predict(request)
            return json_response(200, {"name": name, "ready": True})

        return route, bound, []

    # -- Open Inference Protocol V2 -------------------------------------------------------------
    def v2_server(self, _: Request) -> Response:
        return json_response(200, {"name": "kaizen", "version": __version__, "extensions": []})

    def _v2_lookup(self, method: str, path: str) -> tuple[str, Handler | None, list[str]]:
        parts = path[len("/v2/models/"):].split("/")
        name, rest = parts[0], parts[1:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = "/".join(rest)
        routes: dict[str, tuple[str, str, Callable[[Request, str | None], Response]]] = {
            "": ("GET", "v2_model", self.v2_metadata),
            "ready": ("GET", "v2_model_ready", self.v2_model_ready),
            "infer": ("POST", "v2_infer", self.v2_infer),
        }
        if action not in routes or not name:
            return "not_found", None, []
        expected, route, handler = routes[action]
        if method != expected and not (method == "HEAD" and expected == "GET"):
            return route, None, [expected]

        def bound(request: Request) -> Response:
            self._check_v2_model(name, version)
            return handler(request, version)

        return route, bound, []

    def _check_v2_model(self, name: str, version: str | None) -> None:
        runner = self._ready_runner()
        if name != runner.manifest.name:
            raise RequestError(f"model {name!r} not found; this server serves {runner.manifest.name!r}", 404)
        if version is not None and version != runner.manifest.version:
            raise RequestError(
                f"version {version!r} of model {name!r} not found; this server serves {runner.manifest.version!r}",
                404,
            )

    def v2_metadata(self, _: Request, version: str | None) -> Response:
        runner = self._ready_runner()
        manifest = runner.manifest
        outputs = [{"name": "predict", "datatype": "BYTES" if manifest.output.task == "classification"
                    and not all(isinstance(x, int | float) for x in manifest.output.labels or [])
                    else "FP64", "shape": [-1]}]
        if manifest.output.probabilities:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(manifest.output.labels or [])]})
        return json_response(200, {
            "name": manifest.name,
            "versions": [manifest.version],
            "platform": f"kaizen-{manifest.framework}",
            "inputs": [manifest.tensor_input.model_dump()] if manifest.tensor_input else
            [{"name": "input", "datatype": "BYTES" if runner.schema.string_cols else "FP64",
              "shape": [-1, len(manifest.inputs)], "parameters": {"features": manifest.feature_names}}],
            "outputs": outputs,
        })

    def v2_model_ready(self, _: Request, version: str | None) -> Response:
        return json_response(200, {"name": self.model_name, "ready": True})

    def v2_infer(self, request: Request, version: str | None) -> Response:
        runner = self._ready_runner()
        header_length = request.headers.get(b"inference-header-content-length")
        if header_length is not None:
            try:
                split = int(header_length)
            except ValueError:
                raise RequestError("Inference-Header-Content-Length is not an integer") from None
            if not 0 < split <= len(request.body):
                raise RequestError("Inference-Header-Content-Length is outside the body")
            payload, binary = codecs.parse_json(request.body[:split]), request.body[split:]
        else:
            _require_json(request)
            payload, binary = codecs.parse_json(request.body), b""
        rows, _ = codecs.rows_from_v2(payload, runner.schema, binary)
        self._check_rows(rows.shape[0])
        request.rows = rows.shape[0]
        requested = _requested_outputs(payload)
        outputs: list[dict[str, Any]] = []
        if requested is None or "predict" in requested:
            raw = runner.predict_array(rows)
            outputs.append({"name": "predict", "datatype": codecs.v2_datatype(raw), "shape": list(raw.shape),
                            "data": codecs.to_json_values(raw.reshape(-1))})
        if requested is not None and "predict_proba" in requested:
            proba = runner.predict_proba(rows)
            if proba is None:
                raise RequestError("this model has no predict_proba output", field="outputs")
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": list(proba.shape),
                            "data": proba.reshape(-1).tolist()})
        unknown = sorted((requested or set()) - {"predict", "predict_proba"})
        if unknown:
            raise RequestError(f"unknown output {unknown[0]!r}; outputs are predict, predict_proba",
                               field="outputs")
        response: dict[str, Any] = {"model_name": runner.manifest.name, "model_version": runner.manifest.version,
                                    "outputs": outputs}
        response["id"] = str(payload.get("id")) if isinstance(payload, dict) and "id" in payload else \
            os.urandom(8).hex()
        return json_response(200, response)


def _requested_outputs(payload: Any) -> set[str] | None:
    outputs = payload.get("outputs") if isinstance(payload, dict) else None
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and "name" in o for o in outputs):
        raise RequestError("outputs must be a list of objects with a name", field="outputs")
    return {str(o["name"]) for o in outputs}


def _require_json(request: Request, also: str | None = None) -> None:
    ctype = request.content_type
    # curl's default form type is taken as "unspecified": the body must still parse as JSON.
    if ctype and ctype not in (JSON, FORM) and not ctype.endswith("+json"):
        supported = JSON + (f" or {also}" if also else "")
        raise RequestError(f"unsupported content type {ctype!r}; send {supported}", status=415)


def _request_id(headers: dict[bytes, bytes]) -> str:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            text = value.decode("latin-1")[:128]
            if text.isprintable():
                return text
    return os.urandom(8).hex()
