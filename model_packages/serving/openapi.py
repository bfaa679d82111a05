"""The OpenAPI 3.0 document of the route table (`routes.ROUTES`), its schemas derived from the model's inputs.

Every route names its operation here (`Route.doc`, a method of `Operations`), so a route cannot be served
without being documented.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from model_packages import __version__
from model_packages.manifest import FeatureSpec, Manifest
from model_packages.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from model_packages.serving.router import Route, path_params

ERROR = {"$ref": "#/components/schemas/Error"}


def _feature_schema(spec: FeatureSpec) -> dict[str, Any]:
    schema: dict[str, Any]
    if spec.dtype == "categorical" and spec.allow_unknown and not spec.numeric_categories:
        schema = {"type": "string", "example": (spec.categories or [""])[0]}
    elif spec.dtype == "categorical":
        schema = {"enum": list(spec.categories or [])}
    elif spec.dtype == "integer":
        schema = {"type": "integer"}
    elif spec.dtype == "boolean":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "number"}
    if spec.dtype in ("float", "integer"):
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    if spec.accepts_null:
        schema["nullable"] = True
    if spec.description:
        schema["description"] = spec.description
    return schema


def _csv_value_pattern(spec: FeatureSpec) -> str:
    """A regular expression whose every match is a valid CSV cell for the feature."""
    if spec.dtype == "categorical":
        return "(" + "|".join(re.escape(str(c)) for c in spec.categories or []) + ")"
    if spec.dtype == "boolean":
        return "(0|1|true|false)"
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    if low > 0 or high < 1:
        # The range excludes 0: only the literal bound is certain to be valid.
        return re.escape(repr(low if low > -math.inf else high))
    digits = 6 if high == math.inf else math.floor(math.log10(high))
    integer = "0" if digits == 0 else f"(0|[1-9]\\d{{0,{digits - 1}}})"
    fraction = "" if spec.dtype == "integer" else "(\\.\\d{1,3})?"
    sign = "-?" if low <= -(10**digits) else ""
    return sign + integer + fraction


def _csv_schema(manifest: Manifest) -> dict[str, Any]:
    cells = [_csv_value_pattern(s) for s in manifest.inputs]
    row = ",".join(cells)
    return {"type": "string", "pattern": f"^{row}(\\n{row}){{0,3}}\\n?$",
            "description": "CSV rows, features in order: " + ", ".join(manifest.feature_names)}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Malformed request", 404: "Not found", 405: "Method not allowed", 413: "Payload too large",
               415: "Unsupported content type", 503: "Model not loaded yet, or shutting down"}
    return {str(s): {"description": reasons[s], "content": {"application/json": {"schema": ERROR}}}
            for s in statuses}


def _ok(description: str, schema: dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    return {"200": {"description": description, "content": {content_type: {"schema": schema}}}}


class Operations:
    """The OpenAPI operation of each kind of route, for one model (`Route.doc` names one of these methods)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        # OpenAPI 3.0 has no positional tuple schema; objects keyed by feature name carry the exact types.
        row_object = {
            "type": "object",
            "properties": {s.name: _feature_schema(s) for s in manifest.inputs},
            "required": [s.name for s in manifest.inputs if s.required],
            "additionalProperties": False,
        }
        prediction = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "object"}]}
        self.instances_request: dict[str, Any] = {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "instances": {"type": "array", "minItems": 1, "items": row_object},
                "parameters": {"type": "object", "properties": {"probabilities": {"type": "boolean"}}},
            },
        }
        self.predictions = _ok("Predictions", {
            "type": "object", "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": prediction}},
        })
        width = len(manifest.inputs)
        cell = {"anyOf": [_feature_schema(s) for s in manifest.inputs]} if manifest.inputs else {}
        mlflow_params = {"type": "object", "properties": {"probabilities": {"type": "boolean"}}}
        # MLflow's scoring protocol. OpenAPI 3.0 cannot type a list position by position, so a
        # dataframe_split row's cells are each "one of the features' schemas", in the columns' order.
        self.mlflow_records = {"type": "object", "required": ["dataframe_records"], "additionalProperties": False,
                               "properties": {"dataframe_records": {"type": "array", "minItems": 1,
                                                                    "items": row_object},
                                              "params": mlflow_params}}
        self.mlflow_split = {"type": "object", "required": ["dataframe_split"], "additionalProperties": False,
                             "properties": {"params": mlflow_params, "dataframe_split": {
                                 "type": "object", "required": ["columns", "data"],
                                 "properties": {
                                     "columns": {"type": "array", "enum": [manifest.feature_names]},
                                     "data": {"type": "array", "minItems": 1, "items": {
                                         "type": "array", "minItems": width, "maxItems": width, "items": cell}},
                                     "index": {"type": "array"},
                                 }}}}
        # MLflow's `inputs`: rows, or columns {"feature": [values]} (TF-serving's columnar form). JSON
        # Schema cannot tie the columns' lengths together, so the schema shows one-row columns.
        self.mlflow_inputs_rows = {"type": "object", "required": ["inputs"], "additionalProperties": False,
                                   "properties": {"inputs": {"type": "array", "minItems": 1, "items": row_object},
                                                  "params": mlflow_params}}
        self.mlflow_inputs_columns = {
            "type": "object", "required": ["inputs"], "additionalProperties": False,
            "properties": {"params": mlflow_params, "inputs": {
                "type": "object", "additionalProperties": False,
                "required": [s.name for s in manifest.inputs if s.required],
                "properties": {s.name: {"type": "array", "minItems": 1, "maxItems": 1, "items": _feature_schema(s)}
                               for s in manifest.inputs}}}}
        # Every JSON body /invocations and /predict accept (one parser: codecs.instances_of).
        self.json_shapes = [{**self.instances_request, "additionalProperties": False}, self.mlflow_records,
                            self.mlflow_split, self.mlflow_inputs_rows, self.mlflow_inputs_columns]

    # -- every target -------------------------------------------------------------------------
    def live(self) -> dict[str, Any]:
        return {"summary": "Liveness", "responses": _ok("Alive", {"type": "object"})}

    def ready(self) -> dict[str, Any]:
        return {"summary": "Readiness: 200 once the model is loaded and warmed",
                "responses": {**_ok("Ready", {"type": "object"}), **_errors(503)}}

    def metrics(self) -> dict[str, Any]:
        return {"summary": "Prometheus metrics (text exposition format)",
                "responses": _ok("Metrics", {"type": "string"}, METRICS_CONTENT_TYPE)}

    def openapi(self) -> dict[str, Any]:
        return {"summary": "This document", "responses": _ok("OpenAPI 3.0 document", {"type": "object"})}

    def predict(self) -> dict[str, Any]:
        return {
            "summary": "Predict ({instances} -> {predictions}; MLflow's JSON shapes too)",
            "description": "Exactly one of instances, dataframe_records, dataframe_split, inputs (rows or "
                           "columns); optional params/parameters.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": self.json_shapes}}}},
            "responses": {**self.predictions, **_errors(400, 413, 415, 503)},
        }

    # -- SageMaker and MLflow -----------------------------------------------------------------
    def invocations(self) -> dict[str, Any]:
        return {
            "summary": "SageMaker invocations and MLflow's scoring protocol (JSON or CSV)",
            "description": "Exactly one of instances, dataframe_records, dataframe_split, inputs (rows or "
                           "columns); optional params/parameters. CSV with or without a header row.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": self.json_shapes}},
                "text/csv": {"schema": _csv_schema(self.manifest)}}},
            "responses": {**self.predictions, **_errors(400, 413, 415, 503)},
        }

    # -- KServe V1 ----------------------------------------------------------------------------
    def v1_model(self) -> dict[str, Any]:
        return {"summary": "KServe V1: model readiness",
                "responses": {**_ok("Ready", {"type": "object", "required": ["name", "ready"]}),
                              **_errors(404, 503)}}

    def v1_predict(self) -> dict[str, Any]:
        return {"summary": "KServe V1: predict ({instances} -> {predictions})",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": self.instances_request}}},
                "responses": {**self.predictions, **_errors(400, 404, 413, 415, 503)}}

    # -- Open Inference Protocol V2 -----------------------------------------------------------
    def v2_server(self) -> dict[str, Any]:
        return {"summary": "V2 server metadata",
                "responses": _ok("Metadata", {"type": "object", "required": ["name", "version", "extensions"]})}

    def v2_metadata(self) -> dict[str, Any]:
        return {"summary": "V2 model metadata",
                "responses": {**_ok("Metadata", {"type": "object"}), **_errors(404, 503)}}

    def v2_model_ready(self) -> dict[str, Any]:
        return {"summary": "V2 model readiness",
                "responses": {**_ok("Ready", {"type": "object", "required": ["name", "ready"]}),
                              **_errors(404, 503)}}

    def v2_infer(self) -> dict[str, Any]:
        tensor = {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2,
                          "maxItems": 2},
                "datatype": {"type": "string", "enum": ["FP32", "FP64"]},
                "data": {"type": "array", "items": {"type": "number"}},
            },
        }
        return {
            "summary": "Open Inference Protocol V2 inference",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["inputs"],
                "properties": {"id": {"type": "string"},
                               "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor}},
            }}}},
            "responses": {**_ok("Outputs", {"type": "object", "required": ["model_name", "outputs"]}),
                          **_errors(400, 404, 413, 415, 503)},
        }


def build_openapi(manifest: Manifest, routes: Iterable[Route]) -> dict[str, Any]:
    """OpenAPI for this model and these routes (a later route of the same path and method wins, as in the router)."""
    operations = Operations(manifest)
    values = {"model": manifest.name, "version": manifest.version}  # the only values a path parameter may take
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = route.doc(operations)
        for path in route.paths():
            parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string", "enum": [values[p]]}}
                          for p in path_params(path)]
            paths.setdefault(path, {})[route.method.lower()] = {**operation, **({"parameters": parameters}
                                                                             if parameters else {})}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Kaizen: {manifest.name}", "version": manifest.version,
                 "description": f"Kaizen runtime {__version__} serving {manifest.name} {manifest.version}"},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }
