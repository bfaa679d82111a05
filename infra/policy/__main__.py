"""Entry point the Pulumi CLI runs for `--policy-pack <this directory>` (cwd = this directory).

It runs as a script, so it imports its package by the name it has here: `infra` in the repository,
`kaizen_infra` once installed.
"""

import importlib
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACKAGE.parent))  # the package's parent: `infra` (or `kaizen_infra`) importable

from pulumi_policy import PolicyPack  # noqa: E402

guardrails = importlib.import_module(f"{PACKAGE.name}.policy.guardrails")

PolicyPack(name="kaizen-guardrails", enforcement_level=guardrails.ENFORCEMENT, policies=guardrails.POLICIES)
