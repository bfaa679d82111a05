"""Every route the runtime answers, in one flat table: method, path template, name, handler, OpenAPI operation.

`App` compiles it (`router.Router`) and `openapi.build_openapi` documents it, so a route cannot be served
without being documented (tests/serving/test_routes.py). Adding a contract is a handler module in
`contracts/` and its rows here.
"""

from __future__ import annotations

from model_packages.serving import contract as c
from model_packages.serving.contracts import common, kserve_v1, sagemaker, v2, vertex
from model_packages.serving.openapi import Operations as Doc
from model_packages.serving.router import Route
from model_packages.serving.settings import Settings

ROUTES: tuple[Route, ...] = (
    # Every target: Kaizen's own probes, metrics and this document.
    Route("GET", c.LIVE_PATH, "live", common.live, Doc.live, quiet=True),
    Route("GET", c.READY_PATH, "ready", common.ready, Doc.ready, quiet=True),
    Route("GET", c.METRICS_PATH, "metrics", common.metrics, Doc.metrics, quiet=True),
    Route("GET", "/openapi.json", "openapi", common.openapi, Doc.openapi),
    # SageMaker (and MLflow's scoring protocol, which MLflow clients send to /invocations).
    Route("GET", c.PING_PATH, "ping", common.ready, Doc.ready, quiet=True),
    Route("POST", c.INVOCATIONS_PATH, "invocations", sagemaker.invocations, Doc.invocations, mlflow_errors=True),
    # Vertex AI, Azure ML, Cloud Run: {instances} -> {predictions}.
    Route("POST", c.PREDICT_PATH, "predict", vertex.predict, Doc.predict),
    # KServe V1.
    Route("GET", "/v1/models/{model}", "v1_model", kserve_v1.model_ready, Doc.v1_model),
    Route("POST", "/v1/models/{model}:predict", "v1_predict", kserve_v1.predict, Doc.v1_predict),
    # Open Inference Protocol V2.
    Route("GET", "/v2", "v2_server", v2.server, Doc.v2_server),
    Route("GET", "/v2/health/live", "v2_live", common.live, Doc.live, quiet=True),
    Route("GET", "/v2/health/ready", "v2_ready", common.ready, Doc.ready, quiet=True),
    Route("GET", "/v2/models/{model}[/versions/{version}]", "v2_model", v2.metadata, Doc.v2_metadata),
    Route("GET", "/v2/models/{model}[/versions/{version}]/ready", "v2_model_ready", v2.model_ready,
          Doc.v2_model_ready),
    Route("POST", "/v2/models/{model}[/versions/{version}]/infer", "v2_infer", v2.infer, Doc.v2_infer),
)


def named_routes(settings: Settings) -> tuple[Route, ...]:
    """The routes a platform names in the environment: Vertex's `AIP_HEALTH_ROUTE` and `AIP_PREDICT_ROUTE`,
    Azure ML's `KAIZEN_{READINESS,LIVENESS,SCORING}_ROUTE` (`settings.Settings`). They follow `ROUTES`,
    so one naming a built-in path takes it over."""
    return (
        *(Route("GET", path, "health_custom", common.ready, Doc.ready, quiet=True) for path in settings.health_routes),
        *(Route("GET", path, "live_custom", common.live, Doc.live, quiet=True) for path in settings.liveness_routes),
        *(Route("POST", path, "predict_custom", vertex.predict, Doc.predict) for path in settings.predict_routes),
    )
