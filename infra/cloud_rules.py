"""Every cloud's rule table in one list, above the targets (`infra/common/rules.py` is the engine the
tables are written in, below them)."""

from __future__ import annotations

from .aws.rules import RULES as AWS
from .azure.rules import RULES as AZURE
from .common.rules import Rule
from .gcp.rules import RULES as GCP


def all_rules() -> list[Rule]:
    return [*AWS, *AZURE, *GCP]
