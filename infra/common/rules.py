"""Cloud rules: ranges, enums and exclusions the providers document, checked against declared resources.

Mocks and the SDK types accept any value; the clouds do not. Each cloud's table
(`infra/<cloud>/rules.py`, `RULES`; all three: `infra/cloud_rules.py`) holds rules that cite the page
they come from. The same
tables run in `tests/infra/test_cloud_rules.py` (every committed stack under mocks) and in the
CrossGuard pack (`cloud-rules`, mandatory; `cloud-rules-advisory`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Res:
    """One declared resource: engine type, logical name, engine-cased inputs, URNs it depends on."""

    typ: str
    name: str
    props: Mapping[str, Any]
    urn: str = ""
    deps: tuple[str, ...] = ()


Check = Callable[[Res, list[Res]], Iterable[str]]


@dataclass(frozen=True)
class Rule:
    id: str
    types: tuple[str, ...]
    check: Check  # yields one message per violation
    source: str  # URL (or issue) documenting the rule
    advisory: bool = False  # reported, not blocking
    summary: str = field(default="")


@dataclass(frozen=True)
class Violation:
    rule: Rule
    res: Res
    message: str

    def __str__(self) -> str:
        return f"{self.rule.id} {self.res.typ} {self.res.name}: {self.message} (source: {self.rule.source})"


def get(props: Any, *path: str | int) -> Any:
    cur = props
    for key in path:
        if isinstance(key, int):
            cur = cur[key] if isinstance(cur, list) and len(cur) > key else None
        else:
            cur = cur.get(key) if isinstance(cur, Mapping) else None
    return cur


def as_list(v: Any) -> list[Any]:
    return [] if v is None else v if isinstance(v, list) else [v]


def evaluate(resources: list[Res], rules: list[Rule]) -> list[Violation]:
    """Every violation of `rules` (every cloud's: `infra.cloud_rules.all_rules()`) among `resources`."""
    out = []
    for rule in rules:
        for res in resources:
            if res.typ in rule.types:
                out += [Violation(rule, res, m) for m in rule.check(res, resources)]
    return out


def is_num(value: Any) -> TypeGuard[int | float]:
    """Numbers arrive as int or float (the engine's JSON); bool is not a number here."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def in_range(value: Any, low: float, high: float, what: str) -> Iterable[str]:
    if is_num(value) and not low <= value <= high:
        yield f"{what} {value:g} outside [{low:g}, {high:g}]"
