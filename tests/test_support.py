"""The shared test support keeps its promises: the skip-or-fail rule, distinct free ports."""

from __future__ import annotations

import socket

import pytest

from tests.support import ROOT, free_ports, port_is_free, unavailable


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no tool$"):
        unavailable("no tool", ci="CI lacks the tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^CI lacks the tool$"):
        unavailable("no tool", ci="CI lacks the tool")
    with pytest.raises(pytest.fail.Exception, match=r"^CI must provide this: no tool$"):
        unavailable("no tool")


def test_free_ports_are_distinct_and_free() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(port_is_free(p) for p in ports)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        assert not port_is_free(ports[0])


def test_root_is_the_checkout() -> None:
    assert (ROOT / "pyproject.toml").is_file() and (ROOT / "tests" / "support").is_dir()
