"""The stack program: validate `kaizen:*`, register the tag transform, dispatch to the target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from model_packages import stack_outputs as out

from .common.config import StackConfig, Target, load_config
from .common.tags import register_tag_transform

Deploy = Callable[[StackConfig], dict[str, Any]]


def _aws(cfg: StackConfig) -> dict[str, Any]:
    from .aws.stack import deploy

    return deploy(cfg)


def _azure(cfg: StackConfig) -> dict[str, Any]:
    from .azure.stack import deploy

    return deploy(cfg)


def _gcp(cfg: StackConfig) -> dict[str, Any]:
    from .gcp.stack import deploy

    return deploy(cfg)


def _local(cfg: StackConfig) -> dict[str, Any]:
    from .local.stack import deploy

    return deploy(cfg)


# Each target's `stack.deploy`, imported on use: a stack loads only its own target's SDK.
TARGETS: dict[Target, Deploy] = {"aws": _aws, "azure": _azure, "gcp": _gcp, "local": _local}
# Clouds tag every taggable resource; local containers carry Docker labels instead.
TAGGED: frozenset[Target] = frozenset({"aws", "azure", "gcp"})


def deploy(cfg: StackConfig) -> dict[str, Any]:
    """Declare the stack's resources for an already validated config; returns stack outputs."""
    if cfg.target in TAGGED:
        register_tag_transform(cfg)
    return TARGETS[cfg.target](cfg)


def main() -> dict[str, Any]:
    cfg = load_config()  # raises ConfigError (one message naming the key) before any resource
    outputs = deploy(cfg)
    for key, value in outputs.items():
        pulumi.export(key, value)
    pulumi.export(out.TARGET, cfg.target)
    pulumi.export(out.STACK_KIND, cfg.stack_kind)
    return outputs
