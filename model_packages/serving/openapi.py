"""The OpenAPI 3.0 document of the runtime's routes, derived from the model's input schema."""

from __future__ import annotations

import math
import re
from typing import Any

from model_packages import __version__
from model_packages.manifest import FeatureSpec, Manifest
from model_packages.serving.settings import Settings

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
               415: "Unsupported content type", 503: "Model not loaded yet"}
    return {str(s): {"description": reasons[s], "content": {"application/json": {"schema": ERROR}}}
            for s in statuses}


def build_openapi(manifest: Manifest, settings: Settings) -> dict[str, Any]:
    """OpenAPI for this model: request schemas carry each feature's type and allowed range."""
    # OpenAPI 3.0 has no positional tuple schema; objects keyed by feature name carry the exact types.
    row_object = {
        "type": "object",
        "properties": {s.name: _feature_schema(s) for s in manifest.inputs},
        "required": [s.name for s in manifest.inputs if s.required],
        "additionalProperties": False,
    }
    prediction = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "object"}]}
    instances_request = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "minItems": 1, "items": row_object},
            "parameters": {"type": "object", "properties": {"probabilities": {"type": "boolean"}}},
        },
    }
    predictions = {
        "type": "object", "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": prediction}},
    }
    json_body = {"application/json": {"schema": instances_request}}
    width = len(manifest.inputs)
    cell = {"anyOf": [_feature_schema(s) for s in manifest.inputs]} if manifest.inputs else {}
    mlflow_params = {"type": "object", "properties": {"probabilities": {"type": "boolean"}}}
    # MLflow's scoring protocol. OpenAPI 3.0 cannot type a list position by position, so a
    # dataframe_split row's cells are each "one of the features' schemas", in the columns' order.
    mlflow_records = {"type": "object", "required": ["dataframe_records"], "additionalProperties": False,
                      "properties": {"dataframe_records": {"type": "array", "minItems": 1, "items": row_object},
                                     "params": mlflow_params}}
    mlflow_split = {"type": "object", "required": ["dataframe_split"], "additionalProperties": False,
                    "properties": {"params": mlflow_params, "dataframe_split": {
                        "type": "object", "required": ["columns", "data"],
                        "properties": {
                            "columns": {"type": "array", "enum": [manifest.feature_names]},
                            "data": {"type": "array", "minItems": 1, "items": {
                                "type": "array", "minItems": width, "maxItems": width, "items": cell}},
                            "index": {"type": "array"},
                        }}}}
    invocations_json = {"application/json": {"schema": {"oneOf": [
        {**instances_request, "additionalProperties": False}, mlflow_records, mlflow_split]}}}
    ok = {"200": {"description": "Predictions", "content": {"application/json": {"schema": predictions}}}}
    health = {
        "get": {
            "summary": "Readiness: 200 once the model is loaded and warmed",
            "responses": {"200": {"description": "Ready", "content": {"application/json": {"schema": {
                "type": "object"}}}}, **_errors(503)},
        }
    }
    live = {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive", "content": {
        "application/json": {"schema": {"type": "object"}}}}}}}
    predict = {
        "post": {
            "summary": "Predict ({instances} -> {predictions})",
            "requestBody": {"required": True, "content": json_body},
            "responses": {**ok, **_errors(400, 413, 415, 503)},
        }
    }
    v2_tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
            "datatype": {"type": "string", "enum": ["FP32", "FP64"]},
            "data": {"type": "array", "items": {"type": "number"}},
        },
    }
    paths: dict[str, Any] = {
        "/ping": health,
        "/health/live": live,
        "/health/ready": health,
        "/predict": predict,
        "/invocations": {
            "post": {
                "summary": "SageMaker invocations and MLflow's scoring protocol (JSON or CSV)",
                "description": "Exactly one of instances, dataframe_records, dataframe_split (also inputs, as "
                               "rows or columns); optional params/parameters. CSV with or without a header row.",
                "requestBody": {"required": True, "content": {
                    **invocations_json, "text/csv": {"schema": _csv_schema(manifest)}}},
                "responses": {**ok, **_errors(400, 413, 415, 503)},
            }
        },
        "/v1/models/{model}": {"get": {
            "summary": "KServe V1: model readiness",
            "parameters": [{"name": "model", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": [manifest.name]}}],
            "responses": {"200": {"description": "Ready", "content": {"application/json": {"schema": {
                "type": "object", "required": ["name", "ready"]}}}}, **_errors(404, 503)},
        }},
        "/v1/models/{model}:predict": {"post": {
            "summary": "KServe V1: predict ({instances} -> {predictions})",
            "parameters": [{"name": "model", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": [manifest.name]}}],
            "requestBody": {"required": True, "content": json_body},
            "responses": {**ok, **_errors(400, 404, 413, 415, 503)},
        }},
        "/v2/health/live": live,
        "/v2/health/ready": health,
        f"/v2/models/{manifest.name}": {"get": {"summary": "V2 model metadata", "responses": {
            "200": {"description": "Metadata", "content": {"application/json": {"schema": {"type": "object"}}}},
            **_errors(503)}}},
        f"/v2/models/{manifest.name}/ready": health,
        f"/v2/models/{manifest.name}/infer": {
            "post": {
                "summary": "Open Inference Protocol V2 inference",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["inputs"],
                    "properties": {"id": {"type": "string"},
                                   "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": v2_tensor}},
                }}}},
                "responses": {
                    "200": {"description": "Outputs", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["model_name", "outputs"]}}}},
                    **_errors(400, 404, 413, 415, 503),
                },
            }
        },
    }
    for route in settings.health_routes:
        paths.setdefault(route, health)
    for route in settings.liveness_routes:
        paths.setdefault(route, live)
    for route in settings.predict_routes:
        paths.setdefault(route, predict)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Kaizen: {manifest.name}", "version": manifest.version,
                 "description": f"Kaizen runtime {__version__} serving {manifest.name} {manifest.version}"},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }
