"""The hostile review's payload attacks (attacks/a08_payloads.py, a09_recursion_probe.py) as regression
tests: no body a client can send makes the runtime answer 5xx (each would page the 5xx alarm), and
what cannot be scored is a 4xx naming the problem."""

from __future__ import annotations

import json

import pytest

from model_packages.serving.app import App
from tests.serving.test_app import call, make_app
from tests.support import EXAMPLES

ROW = [5.1, 3.5, 1.4, 0.2]
INFER = "/v2/models/iris-classifier/infer"


def deep(n: int, leaf: str = "1") -> bytes:
    return ("[" * n + leaf + "]" * n).encode()


def v2(shape: list[int], data: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": "FP64", "data": data}]}).encode()


@pytest.fixture(scope="module")
def app() -> App:
    return make_app(EXAMPLES / "iris-classifier")[0]


REFUSED = [  # (name, path, body, content type): each must be a 4xx with an error message
    ("deep list 100k", "/predict", b'{"instances":' + deep(100_000) + b"}", "application/json"),
    ("deep list 5000", "/predict", b'{"instances":' + deep(5000) + b"}", "application/json"),
    ("deep list in a row", "/predict", b'{"instances":[[' + deep(985) + b",1,1,1]]}", "application/json"),
    ("deep object 100k", "/predict", ('{"a":' * 100_000 + "1" + "}" * 100_000).encode(), "application/json"),
    ("NaN literal", "/predict", b'{"instances":[[NaN,1,1,1]]}', "application/json"),
    ("Infinity literal", "/predict", b'{"instances":[[Infinity,1,1,1]]}', "application/json"),
    ("1e400", "/predict", b'{"instances":[[1e400,1,1,1]]}', "application/json"),
    ("5000-digit int", "/predict", b'{"instances":[[' + b"1" * 5000 + b",1,1,1]]}", "application/json"),
    ("string number", "/predict", b'{"instances":[["5.1",1,1,1]]}', "application/json"),
    ("null in a required feature", "/predict", b'{"instances":[[null,1,1,1]]}', "application/json"),
    ("object in a row", "/predict", b'{"instances":[[{},1,1,1]]}', "application/json"),
    ("lone surrogate", "/predict", b'{"instances":[["\\ud800",1,1,1]]}', "application/json"),
    ("invalid utf-8", "/predict", b'{"instances":[["\xff",1,1,1]]}', "application/json"),
    ("instances not a list", "/predict", b'{"instances":5}', "application/json"),
    ("instances empty", "/predict", b'{"instances":[]}', "application/json"),
    ("ragged rows", "/predict", b'{"instances":[[1,2,3,4],[1,2]]}', "application/json"),
    ("3-D instances", "/predict", b'{"instances":[[[1,2,3,4]]]}', "application/json"),
    ("top-level list", "/predict", json.dumps([ROW]).encode(), "application/json"),
    ("empty body", "/predict", b"", "application/json"),
    ("parameters not an object", "/predict", json.dumps({"instances": [ROW], "parameters": [1]}).encode(),
     "application/json"),
    ("out of range", "/predict", b'{"instances":[[150,1,1,1]]}', "application/json"),
    ("text/plain", "/predict", json.dumps({"instances": [ROW]}).encode(), "text/plain"),
    ("csv nan", "/invocations", b"nan,3.5,1.4,0.2\n", "text/csv"),
    ("csv 1e400", "/invocations", b"1e400,3.5,1.4,0.2\n", "text/csv"),
    ("csv text", "/invocations", b"abc,3.5,1.4,0.2\n", "text/csv"),
    ("csv short row", "/invocations", b"1,2\n", "text/csv"),
    ("csv unterminated quote", "/invocations", b'"5.1,3.5,1.4,0.2\n', "text/csv"),
    ("csv NUL", "/invocations", b"5.1\x00,3.5,1.4,0.2\n", "text/csv"),
    ("csv 200k-digit field", "/invocations", b"1" * 200_000 + b",1,1,1\n", "text/csv"),
    ("xml", "/invocations", b"<a/>", "application/xml"),
    ("v2 shape and data disagree", INFER, v2([2, 4], ROW), "application/json"),
    ("v2 65 dimensions", INFER, v2([1] * 65, [1]), "application/json"),
    ("v2 negative shape", INFER, v2([-1, 4], ROW), "application/json"),
]


@pytest.mark.parametrize(("path", "body", "ctype"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_payload_that_cannot_be_scored_is_a_4xx_naming_the_problem(app: App, path: str, body: bytes,
                                                                       ctype: str) -> None:
    status, payload = call(app, "POST", path, body, ctype)
    assert 400 <= status < 500, (status, payload)
    assert isinstance(payload.get("error"), str) and payload["error"], payload


def _recursion_bodies(depth: int) -> dict[str, tuple[str, bytes]]:
    """a09: nesting depths around Python's recursion limit, in every place a value can sit."""
    v2 = b'"inputs":[{"name":"input","shape":[1,4],"datatype":"FP64","data":[1,1,1,1]}]'
    return {
        "dict-row value": ("/predict", b'{"instances":[{"sepal_length":' + deep(depth)
                           + b',"sepal_width":1,"petal_length":1,"petal_width":1}]}'),
        "list-row value": ("/predict", b'{"instances":[[' + deep(depth) + b",1,1,1]]}"),
        "v2 BYTES value": (INFER, b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"BYTES","data":['
                           + deep(depth) + b",1,1,1]}]}"),
        "v2 id": (INFER, b'{"id":' + deep(depth) + b"," + v2 + b"}"),
        "parameters": ("/predict", b'{"instances":[[1,1,1,1]],"parameters":{"x":' + deep(depth) + b"}}"),
        "v2 outputs name": (INFER, b'{"outputs":[{"name":' + deep(depth) + b"}]," + v2 + b"}"),
    }


@pytest.mark.parametrize("depth", [900, 940, 960, 980, 990, 995, 1000, 1100])
def test_nesting_around_the_recursion_limit_never_gives_a_5xx(app: App, depth: int) -> None:
    for name, (path, body) in _recursion_bodies(depth).items():
        status, payload = call(app, "POST", path, body)
        assert status < 500, (name, depth, status, payload)
        if status >= 400:
            assert isinstance(payload.get("error"), str), (name, depth, payload)


def test_the_app_still_scores_after_the_attacks(app: App) -> None:
    for _, path, body, ctype in REFUSED:
        call(app, "POST", path, body, ctype)
    assert call(app, "POST", "/predict", {"instances": [ROW]}) == (200, {"predictions": ["setosa"]})
