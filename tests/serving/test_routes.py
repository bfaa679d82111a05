"""The route table: every route is matched as its template says and documented in /openapi.json, and nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_packages.serving.app import App
from model_packages.serving.messages import Request
from model_packages.serving.router import Route, Router, path_params
from model_packages.serving.routes import ROUTES
from tests.serving.test_app import IRIS, ROW, call, make_app

NAMED = {"health_routes": ("/isalive",), "liveness_routes": ("/alive",), "predict_routes": ("/score", "/ping")}
VALUES = {"model": "iris-classifier", "version": "1.0.0"}


@pytest.fixture(scope="module")
def named_app() -> App:
    return make_app(IRIS, **NAMED)[0]


def _concrete(template: str) -> str:
    for name in path_params(template):
        template = template.replace("{" + name + "}", VALUES[name])
    return template


def test_every_route_is_documented_and_every_documented_route_exists(named_app: App) -> None:
    doc = json.loads(named_app.handle(Request("GET", "/openapi.json")).body)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    served = {(path, route.method) for route in named_app.routes for path in route.paths()}
    assert documented == served
    assert {r.name for r in named_app.routes} >= {"health_custom", "live_custom", "predict_custom"}
    for path, item in doc["paths"].items():  # each path parameter is declared, with the one value it may take
        for operation in item.values():
            declared = {p["name"]: p["schema"]["enum"] for p in operation.get("parameters", [])}
            assert declared == {name: [VALUES[name]] for name in path_params(path)}, path


def test_every_route_is_reached_at_its_paths(named_app: App) -> None:
    """Each table row answers under its own name (the metrics' route label) at every form of its template."""
    router = Router(named_app.routes)
    for route in named_app.routes:
        for path in route.paths():
            target, params = router.match(_concrete(path))
            assert target is not None and target.by_method[route.method] is route, (route, path)
            assert dict(params) == {name: VALUES[name] for name in path_params(path)}
    requests = {"predict_custom": {"instances": [ROW]}, "v1_predict": {"instances": [ROW]}, "invocations":
                {"instances": [ROW]}, "predict": {"instances": [ROW]},
                "v2_infer": {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}}
    for route in named_app.routes:
        for path in route.paths():
            status, body = call(named_app, route.method, _concrete(path), requests.get(route.name))
            assert status == 200, (route.name, path, body)


def test_a_named_route_takes_over_a_built_in_path(named_app: App) -> None:
    """KAIZEN_SCORING_ROUTE=/ping: POST /ping scores, GET /ping still answers readiness; 405 lists both."""
    assert call(named_app, "POST", "/ping", {"instances": [ROW]})[1] == {"predictions": ["setosa"]}
    assert call(named_app, "GET", "/ping")[1]["status"] == "ready"
    response = named_app.handle(Request("DELETE", "/ping"))
    assert response.status == 405 and ("allow", "GET, POST") in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v2/models/iris-classifier/infer", 405, "POST"),
        ("POST", "/v1/models/iris-classifier", 405, "GET"),
        ("GET", "/v1/models/iris-classifier:predict", 405, "POST"),
        ("HEAD", "/v2/models/iris-classifier/versions/1.0.0/ready", 200, None),
        ("GET", "/v2/models/iris-classifier/versions/ready", 404, None),  # `ready` taken as the version
        ("GET", "/v2/models/", 404, None),
        ("GET", "/v2/models/iris-classifier/versions", 404, None),
        ("GET", "/v1/models/iris-classifier:explain", 404, None),
        ("GET", "/v1/models/a/b", 404, None),
        ("GET", "/v2/models/iris-classifier/infer/more", 404, None),
    ],
)
def test_templated_paths(named_app: App, method: str, path: str, status: int, allow: str | None) -> None:
    response = named_app.handle(Request(method, path))
    assert response.status == status, response.body
    assert dict(response.headers).get("allow") == allow


def test_templates_compile_as_documented() -> None:
    route = Route("GET", "/a/{x}[/b/{y}]/c", "r", lambda app, request: None, lambda ops: {})  # type: ignore[arg-type,return-value]
    assert route.paths() == ["/a/{x}/c", "/a/{x}/b/{y}/c"]
    router = Router([route])
    assert dict(router.match("/a/1/b/2/c")[1]) == {"x": "1", "y": "2"}
    assert dict(router.match("/a/1/c")[1]) == {"x": "1"}
    assert router.match("/a/1:2/c")[0] is None  # a parameter is one segment without ':'
    assert router.match("/a/.*/c")[0] is not None and router.match("/a/x/cc")[0] is None


def test_the_table_names_each_route_once() -> None:
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
    assert len({r.name for r in ROUTES}) == len(ROUTES)


def test_probes_are_not_request_logged(tmp_path: Path) -> None:
    app, stream = make_app(IRIS)
    for path in ("/ping", "/health/ready", "/health/live", "/v2/health/ready", "/metrics"):
        app.handle(Request("GET", path))
    app.handle(Request("POST", "/ping"))  # a wrong method on a probe is still a probe
    call(app, "POST", "/v1/models/iris-classifier:predict", {"instances": [ROW]})
    app.log.flush()
    logged = [json.loads(line)["route"] for line in stream.getvalue().splitlines() if '"request"' in line]
    assert logged == ["v1_predict"]
