"""The stack program: validate `kaizen:*`, register the tag transform, dispatch to the target."""

from __future__ import annotations

import importlib
from typing import Any

import pulumi

from infra.common.config import StackConfig, load_config
from infra.common.tags import register_tag_transform


def deploy(cfg: StackConfig) -> dict[str, Any]:
    """Declare the stack's resources for an already validated config; returns stack outputs."""
    if cfg.target == "local":
        local = importlib.import_module("infra.local")
        return local.deploy(cfg) or {}
    register_tag_transform(cfg)
    if cfg.target == "aws":
        from infra.aws.stack import deploy as deploy_aws

        return deploy_aws(cfg)
    if cfg.target == "azure":
        from infra.azure.stack import deploy as deploy_azure

        return deploy_azure(cfg)
    from infra.gcp.stack import deploy as deploy_gcp

    return deploy_gcp(cfg)


def main() -> dict[str, Any]:
    cfg = load_config()  # raises ConfigError (one message naming the key) before any resource
    outputs = deploy(cfg)
    for key, value in outputs.items():
        pulumi.export(key, value)
    pulumi.export("target", cfg.target)
    pulumi.export("stackKind", cfg.stack_kind)
    return outputs
