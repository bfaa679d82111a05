"""Shared pieces of every stack: validated config, tags, naming."""

from infra.common.config import ConfigError, StackConfig, load_config
from infra.common.naming import physical_name
from infra.common.tags import register_tag_transform, stack_tags

__all__ = [
    "ConfigError",
    "StackConfig",
    "load_config",
    "physical_name",
    "register_tag_transform",
    "stack_tags",
]
