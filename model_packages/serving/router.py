"""Routes as data: templated paths compiled once into a dict of exact paths and a few patterns.

`Route("POST", "/v2/models/{model}[/versions/{version}]/infer", "v2_infer", v2.infer, Operations.v2_infer)`:
`{param}` is one path segment without ':' (the handler reads it from `request.params`), `[...]` an
optional part. A path without parameters is one dict lookup (the hot routes); the templated ones are
one precompiled regular expression, tried in table order. The table itself is `routes.ROUTES`; `openapi` documents it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any

from model_packages.serving.messages import NO_PARAMS, Request, Response

if TYPE_CHECKING:
    from model_packages.serving.app import App
    from model_packages.serving.openapi import Operations

Handler = Callable[["App", Request], Response]
_PARAM = re.compile(r"\{([a-z_]+)\}")
_TOKENS = re.compile(r"(\{[a-z_]+\}|\[|\])")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a template: `{param}` segments, `[...]` optional parts
    name: str  # the `route` label of the metrics and the request log
    handler: Handler
    doc: Callable[[Operations], dict[str, Any]]  # its OpenAPI operation
    quiet: bool = False  # a probe: counted in the metrics, not request-logged
    mlflow_errors: bool = False  # error bodies also carry MLflow's `error_code` and `message`

    def paths(self) -> list[str]:
        """The template with each optional part left out, then kept (OpenAPI has no optional segments)."""
        parts = re.split(r"\[([^\[\]]*)\]", self.path)  # even items are fixed, odd ones optional
        return ["".join(choice) for choice in product(*([p] if i % 2 == 0 else ["", p] for i, p in enumerate(parts)))]


def path_params(path: str) -> list[str]:
    """The `{param}` names of a template, in order."""
    return _PARAM.findall(path)


def _regex(template: str, group: str) -> str:
    """The template as a regular expression; parameters are groups named `{group}_{param}`, possessive (a
    parameter never holds '/' or ':', and only those or the end follow it: failing paths fail fast)."""
    out = []
    for token in _TOKENS.split(template):
        if token == "[":
            out.append("(?:")
        elif token == "]":
            out.append(")?")
        elif _PARAM.fullmatch(token):
            out.append(f"(?P<{group}_{token[1:-1]}>[^/:]++)")
        else:
            out.append(re.escape(token))
    return "".join(out)


class Target:
    """Every route of one path template, by method (HEAD is answered as GET, without the body)."""

    __slots__ = ("allow", "by_method", "first")

    def __init__(self, routes: list[Route]) -> None:
        self.by_method: dict[str, Route] = {}
        for route in routes:  # a later route of the same method wins (a platform's route over a built-in one)
            self.by_method[route.method] = route
        self.allow = ", ".join(sorted(self.by_method))  # for 405 answers
        self.first = next(iter(self.by_method.values()))  # names a wrong-method request in metrics and logs
        if "GET" in self.by_method:
            self.by_method.setdefault("HEAD", self.by_method["GET"])


class Router:
    """Matches a path to its `Target` and template parameters: a dict for exact paths, one regex for the rest."""

    def __init__(self, routes: Iterable[Route]) -> None:
        grouped: dict[str, list[Route]] = {}
        for route in routes:
            grouped.setdefault(route.path, []).append(route)
        self._exact: dict[str, Target] = {}
        self._templated: dict[str, tuple[Target, tuple[tuple[str, str], ...]]] = {}
        alternatives = []
        for template, group in grouped.items():
            if not _TOKENS.search(template):
                self._exact[template] = Target(group)
                continue
            name = f"t{len(self._templated)}"
            alternatives.append(f"(?P<{name}>{_regex(template, name)})")
            params = tuple((param, f"{name}_{param}") for param in path_params(template))
            self._templated[name] = (Target(group), params)
        # In table order: the first template that matches the whole path wins.
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def match(self, path: str) -> tuple[Target | None, Mapping[str, str]]:
        target = self._exact.get(path)
        if target is not None:
            return target, NO_PARAMS
        found = self._pattern.fullmatch(path) if self._pattern is not None else None
        if found is None or found.lastgroup is None:
            return None, NO_PARAMS
        target, params = self._templated[found.lastgroup]  # the outer group of the alternative that matched
        return target, {param: value for param, group in params if (value := found.group(group)) is not None}
