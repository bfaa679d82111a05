"""Registry addresses and push errors (model_packages/image/registry.py): no Docker engine needed."""

from __future__ import annotations

import pytest

from model_packages.image.registry import PushError, Registry, is_transient


def test_registry_parsing() -> None:
    assert Registry.parse("127.0.0.1:5000") == Registry("127.0.0.1:5000", "http")
    assert Registry.parse("localhost:5000").scheme == "http"
    ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert Registry.parse(ecr) == Registry(ecr, "https")
    assert Registry.parse("https://" + ecr + "/") == Registry(ecr, "https")
    with pytest.raises(PushError):
        Registry.parse("127.0.0.1:5000/some/path")


def test_error_classification() -> None:
    assert is_transient("dial tcp 127.0.0.1:5000: connect: connection refused")
    assert is_transient("received unexpected HTTP status: 503 Service Unavailable")
    assert is_transient("net/http: TLS handshake timeout")
    assert not is_transient("unauthorized: authentication required")
    assert not is_transient("denied: requested access to the resource is denied")
