"""Entry point the Pulumi CLI runs for `--policy-pack infra/policy` (cwd = this directory)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `infra` importable

from pulumi_policy import PolicyPack

from infra.policy.guardrails import ENFORCEMENT, POLICIES

PolicyPack(name="kaizen-guardrails", enforcement_level=ENFORCEMENT, policies=POLICIES)
