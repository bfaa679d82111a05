"""The Open Inference Protocol V2 (KServe V2, Triton, MLServer): server and model metadata, readiness, infer.

`infer` takes JSON tensors (one `[rows, features]` input, or one per feature) and the binary tensor
extension (`Inference-Header-Content-Length`); outputs are `predict` and, when asked, `predict_proba`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from model_packages import __version__
from model_packages.errors import RequestError
from model_packages.serving import codecs
from model_packages.serving.messages import Request, Response, json_response, require_json

if TYPE_CHECKING:
    from model_packages.serving.app import App


def server(app: App, request: Request) -> Response:
    return json_response(200, {"name": "kaizen", "version": __version__, "extensions": []})


def metadata(app: App, request: Request) -> Response:
    app.check_model(request.params["model"], request.params.get("version"))
    runner = app.ready_runner()
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


def model_ready(app: App, request: Request) -> Response:
    app.check_model(request.params["model"], request.params.get("version"))
    return json_response(200, {"name": app.model_name, "ready": True})


def infer(app: App, request: Request) -> Response:
    app.check_model(request.params["model"], request.params.get("version"))
    runner = app.ready_runner()
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
        require_json(request)
        payload, binary = codecs.parse_json(request.body), b""
    rows, _ = codecs.rows_from_v2(payload, runner.schema, binary)
    app.check_rows(rows.shape[0])
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
        raise RequestError(f"unknown output {unknown[0]!r}; outputs are predict, predict_proba", field="outputs")
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
