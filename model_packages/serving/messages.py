"""Requests and answers as the app sees them, whatever serves HTTP: plain dataclasses and JSON encoders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from model_packages.errors import RequestError

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NO_PARAMS: Mapping[str, str] = MappingProxyType({})
JSON_CHUNK = 1000  # list items per json.dumps call: one call holds the GIL, so big answers are encoded in pieces


@dataclass
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    too_large: bool = False
    rows: int = 0
    params: Mapping[str, str] = field(default_factory=dict)  # the route's path parameters, e.g. {"model": ...}

    @property
    def content_type(self) -> str:
        return self.headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


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


def require_json(request: Request, also: str | None = None) -> None:
    """415 unless the body is declared JSON (or not declared: curl's default form type counts as unspecified)."""
    ctype = request.content_type
    if ctype and ctype not in (JSON, FORM) and not ctype.endswith("+json"):
        supported = JSON + (f" or {also}" if also else "")
        raise RequestError(f"unsupported content type {ctype!r}; send {supported}", status=415)
